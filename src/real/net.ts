// Net on node:net. What it guarantees beyond a bare socket:
// - every socket has an 'error' listener from birth, so EPIPE/ECONNRESET and a
//   peer vanishing surface as onClose(NetError), never as an uncaught exception
//   (Node ignores SIGPIPE, so a write to a closed peer is an EPIPE error here);
// - errors are NetError with the Node code (ECONNREFUSED, ETIMEDOUT, ...);
// - connect has a timeout; Nagle is off (replication frames are latency-bound);
// - write() copies, so callers may reuse their buffers (as in the sim), unless
//   the caller hands them over (`owned`);
// - a large owned write goes to the socket from libuv's thread pool, not the
//   main thread (see RealConnection.write).

import { write as fdWrite } from 'node:fs';
import * as net from 'node:net';
import type { Connection, Listener, Net } from '../core/drivers.ts';
import { assert, errorCode, NetError } from '../core/errors.ts';

export interface RealNetOptions {
  /** Connect timeout when the caller gives none. */
  connectTimeoutMs?: number;
  /** Accepted connections per listener; beyond it the kernel's backlog waits, then Node drops them. */
  connectionsPerListenerMax?: number;
  /**
   * Errors of a listener after it is listening (e.g. EMFILE on accept). They do
   * not concern any one connection; default: a process warning.
   */
  onListenerError?: (error: NetError) => void;
}

const CONNECT_TIMEOUT_MS_DEFAULT = 10_000;
/** One read's largest size with a connection's own read buffer (Node reads at most 64 KiB otherwise). */
const OWN_READ_BUFFER_BYTES = 256 * 1024;
const CONNECT_TIMEOUT_MS_MAX = 600_000;
const CONNECTIONS_PER_LISTENER_MAX_DEFAULT = 1024;
/** Owned writes at least this long are offloaded (RealConnection.write). */
const OFFLOAD_MIN_BYTES = 256 * 1024;
/** Bytes queued behind an offloaded write before write() returns false (then a drain follows). */
const OFFLOAD_QUEUE_MAX_BYTES = 8 * 1024 * 1024;
/** A non-blocking socket's "nothing fits now": the socket's own queue takes the bytes and waits. */
const WOULD_BLOCK = new Set(['EAGAIN', 'EWOULDBLOCK']);

interface Offload {
  /** Writes that came while it ran, in order, for the socket's own queue. */
  queue: Array<{ buf: Buffer; onSent: (() => void) | undefined }>;
  queuedBytes: number;
  /** end() came while it ran. */
  endAfter: boolean;
  /** The socket was destroyed while it ran: close its handle once the write returns. */
  destroyAfter: (() => void) | undefined;
}

function toNetError(err: unknown, context: string): NetError {
  if (err instanceof NetError) return err;
  const code = errorCode(err) ?? 'EIO';
  const message = err instanceof Error ? err.message : String(err);
  return new NetError(code, `${context}: ${message}`);
}

class RealConnection implements Connection {
  readonly remote: string;
  private appClosed = false;
  private closed = false;
  private closeNotified = false;
  private error: NetError | undefined;
  private hasData = false;
  private hasDrain = false;
  private closeHandler: ((error?: Error) => void) | undefined;
  private drainHandler: (() => void) | undefined;
  /** The offloaded write running, if one is. */
  private offload: Offload | undefined;
  /** write() returned false while an offloaded write ran. */
  private drainOwed = false;
  /** Writes that went to the socket from the thread pool (whole or in part). */
  offloadedWrites = 0;

  constructor(private readonly socket: net.Socket) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    socket.setNoDelay(true);
    // The descriptor must stay open while an offloaded write may use it (a
    // closed number can be reused by another file at once): the stream's
    // destroy hook, which closes the handle, waits for that write.
    const s = socket as net.Socket & { _destroy(err: Error | null, cb: (err?: Error | null) => void): void };
    const destroyNow = s._destroy.bind(s);
    s._destroy = (err, cb) => {
      if (this.offload) this.offload.destroyAfter = () => destroyNow(err, cb);
      else destroyNow(err, cb);
    };
    socket.on('error', (err: Error) => {
      // The first error is the cause; 'close' follows and reports it.
      this.error ??= toNetError(err, `connection ${this.remote}`);
    });
    socket.on('close', () => {
      this.closed = true;
      this.notifyClose();
    });
  }

  write(data: Uint8Array, owned = false, onSent?: () => void): boolean {
    if (this.appClosed) throw new NetError('EPIPE', `write after end/destroy on connection ${this.remote}`);
    // Closed or closing under us: the cause reaches onClose.
    if (this.closed || this.socket.destroyed || !this.socket.writable) {
      onSent?.();
      return false;
    }
    const o = this.offload;
    if (o) {
      // Behind the offloaded write, in order.
      o.queue.push({ buf: owned ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data), onSent: owned ? onSent : undefined });
      if (!owned) onSent?.();
      o.queuedBytes += data.byteLength;
      if (o.queuedBytes <= OFFLOAD_QUEUE_MAX_BYTES) return true;
      this.drainOwed = true;
      return false;
    }
    if (!owned) {
      const ok = this.socket.write(Buffer.from(data));
      onSent?.();
      return ok;
    }
    const fd = (this.socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
    if (data.byteLength >= OFFLOAD_MIN_BYTES && typeof fd === 'number' && fd >= 0 && this.socket.writableLength === 0) {
      this.offloadWrite(fd, Buffer.from(data.buffer, data.byteOffset, data.byteLength), onSent);
      return true;
    }
    // The stream calls back once the bytes are written to the socket, or with
    // an error when it is destroyed first: either way it has let go of them.
    return this.socket.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength), onSent ? () => onSent() : undefined);
  }

  /**
   * write(2) of buf on the socket's descriptor from libuv's thread pool. The
   * kernel's work for a write to a TCP socket (the copy, and on loopback the
   * receiving side's processing too) otherwise runs on the main thread: a
   * quarter of a second per GiB a live master sends, on the thread that also
   * hashes and stores what the master ingests (BENCHMARKS.md, live section).
   * Only when the socket's own queue is empty, one at a time, and what comes
   * meanwhile waits behind it; the socket is non-blocking, so what the kernel
   * does not take at once goes on through the socket's own queue.
   */
  private offloadWrite(fd: number, buf: Buffer, onSent: (() => void) | undefined): void {
    const o: Offload = { queue: [], queuedBytes: 0, endAfter: false, destroyAfter: undefined };
    this.offload = o;
    this.offloadedWrites++;
    fdWrite(fd, buf, 0, buf.length, null, (err, written) => {
      this.offload = undefined;
      const letGo = (): void => {
        onSent?.();
        for (const q of o.queue) q.onSent?.();
      };
      if (o.destroyAfter) {
        letGo();
        o.destroyAfter();
        return;
      }
      const code = err ? errorCode(err) ?? 'EIO' : undefined;
      if (code !== undefined && !WOULD_BLOCK.has(code)) {
        // The peer is gone (EPIPE, ECONNRESET): the first error is the cause, as for the socket's own writes.
        this.error ??= toNetError(err, `connection ${this.remote}`);
        letGo();
        this.socket.destroy();
        return;
      }
      const n = code === undefined ? written : 0;
      let ok = true;
      if (n < buf.length) ok = this.socket.write(buf.subarray(n), onSent ? () => onSent() : undefined);
      else onSent?.();
      for (const q of o.queue) ok = this.socket.write(q.buf, q.onSent ? () => (q.onSent as () => void)() : undefined);
      if (o.endAfter) this.socket.end();
      if (this.drainOwed) {
        this.drainOwed = false;
        // Over its high-water mark the socket drains by itself ('drain'); under it, tell the writer now.
        if (ok) setImmediate(() => this.drainHandler?.());
      }
    });
  }

  end(): void {
    this.appClosed = true;
    if (this.offload) this.offload.endAfter = true;
    else if (!this.socket.destroyed) this.socket.end();
  }

  destroy(): void {
    this.appClosed = true;
    this.socket.destroy();
  }

  onData(handler: (chunk: Uint8Array) => void, options?: { borrow?: boolean }): void {
    assert(!this.hasData, `onData registered twice on ${this.remote}`);
    this.hasData = true;
    if (options?.borrow && this.readIntoOwnBuffer(handler)) return;
    // Until now the socket stayed paused and buffered (bounded by TCP's window).
    this.socket.on('data', (chunk: Buffer) => handler(chunk));
  }

  /**
   * Reads into one buffer of this connection, reused for every read, instead
   * of a fresh 64 KiB buffer per read: Node's `onread` option (net.connect
   * has it, accepted sockets do not, so it is set up here the way the Socket
   * constructor does it). Fresh read buffers cost page faults and, as external
   * memory, frequent full garbage collections: about a fifth of a live slave's
   * CPU. Needs Node's internals as they are in Node 20-22; false (and nothing
   * changed) when they are not there.
   */
  private readIntoOwnBuffer(handler: (chunk: Uint8Array) => void): boolean {
    const socket = this.socket as unknown as Record<string | symbol, unknown> & net.Socket;
    const handle = socket._handle as { useUserBuffer?: (b: Uint8Array) => void } | null | undefined;
    const symbols = Object.getOwnPropertySymbols(socket);
    const kBuffer = symbols.find((x) => x.description === 'kBuffer');
    const kBufferCb = symbols.find((x) => x.description === 'kBufferCb');
    if (!handle || typeof handle.useUserBuffer !== 'function' || !kBuffer || !kBufferCb || socket[kBuffer] !== null || socket[kBufferCb] !== null) return false;
    // What arrived before onData: the readable side's buffer, in order.
    for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) handler(chunk);
    const buf = Buffer.allocUnsafeSlow(OWN_READ_BUFFER_BYTES);
    handle.useUserBuffer(buf);
    socket[kBuffer] = buf;
    // A plain Uint8Array view: Buffer's slice() would be a view too, Uint8Array's is a copy.
    socket[kBufferCb] = (n: number): void => handler(new Uint8Array(buf.buffer, buf.byteOffset, n));
    // Flowing, so the end of the stream is seen (and the socket closes) without 'data' listeners.
    socket.resume();
    return true;
  }

  onDrain(handler: () => void): void {
    assert(!this.hasDrain, `onDrain registered twice on ${this.remote}`);
    this.hasDrain = true;
    this.drainHandler = handler;
    this.socket.on('drain', handler);
  }

  onClose(handler: (error?: Error) => void): void {
    assert(this.closeHandler === undefined, `onClose registered twice on ${this.remote}`);
    this.closeHandler = handler;
    // Never inline: callbacks run as their own event, as in the sim.
    if (this.closed) setImmediate(() => this.notifyClose());
  }

  private notifyClose(): void {
    if (this.closeNotified || !this.closeHandler) return;
    this.closeNotified = true;
    this.closeHandler(this.error);
  }
}

class RealListener implements Listener {
  private closed = false;
  constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly onError: (error: NetError) => void,
  ) {}

  /** Stops accepting; connections already accepted stay open (their owners close them). */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    // server.close's callback waits for every accepted connection to end, which
    // is not ours to wait for; the listening socket itself is closed right here.
    this.server.close((err) => {
      if (err) this.onError(toNetError(err, `close listener on port ${this.port}`));
    });
    return new Promise((resolve) => setImmediate(resolve));
  }
}

export class RealNet implements Net {
  private readonly connectTimeoutMs: number;
  private readonly connectionsPerListenerMax: number;
  private readonly onListenerError: (error: NetError) => void;

  constructor(options: RealNetOptions = {}) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT;
    this.connectionsPerListenerMax = options.connectionsPerListenerMax ?? CONNECTIONS_PER_LISTENER_MAX_DEFAULT;
    if (!Number.isInteger(this.connectTimeoutMs) || this.connectTimeoutMs <= 0 || this.connectTimeoutMs > CONNECT_TIMEOUT_MS_MAX) {
      throw new RangeError(`RealNetOptions.connectTimeoutMs: ${this.connectTimeoutMs} must be an integer in [1, ${CONNECT_TIMEOUT_MS_MAX}]`);
    }
    if (!Number.isInteger(this.connectionsPerListenerMax) || this.connectionsPerListenerMax < 1) {
      throw new RangeError(`RealNetOptions.connectionsPerListenerMax: ${this.connectionsPerListenerMax} must be an integer >= 1`);
    }
    this.onListenerError =
      options.onListenerError ?? ((error) => process.emitWarning(error.message, { code: error.code, type: 'NetListenerWarning' }));
  }

  listen(host: string, port: number, onConnection: (conn: Connection) => void): Promise<Listener> {
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return Promise.reject(new NetError('EINVAL', `listen ${host}:${port}: bad port`));
    }
    return new Promise((resolve, reject) => {
      const server = net.createServer({ allowHalfOpen: false, noDelay: true });
      server.maxConnections = this.connectionsPerListenerMax;
      server.on('connection', (socket) => onConnection(new RealConnection(socket)));
      const onListenError = (err: Error): void => reject(toNetError(err, `listen ${host}:${port}`));
      server.once('error', onListenError);
      server.listen({ host, port }, () => {
        server.off('error', onListenError);
        const address = server.address();
        assert(address !== null && typeof address === 'object', `listen ${host}:${port}: no address`);
        const listener = new RealListener(server, address.port, this.onListenerError);
        server.on('error', (err) => this.onListenerError(toNetError(err, `listener ${host}:${address.port}`)));
        resolve(listener);
      });
    });
  }

  connect(host: string, port: number, options?: { timeoutMs?: number }): Promise<Connection> {
    const timeoutMs = options?.timeoutMs ?? this.connectTimeoutMs;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return Promise.reject(new NetError('EINVAL', `connect ${host}:${port}: bad port`));
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > CONNECT_TIMEOUT_MS_MAX) {
      return Promise.reject(new NetError('EINVAL', `connect ${host}:${port}: timeoutMs ${timeoutMs} not in (0, ${CONNECT_TIMEOUT_MS_MAX}]`));
    }
    return new Promise((resolve, reject) => {
      let settled = false;
      const socket = net.connect({ host, port, noDelay: true, allowHalfOpen: false });
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        socket.destroy();
        reject(new NetError('ETIMEDOUT', `connect ${host}:${port}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      // Stays attached for the socket's life: after 'connect' it sees only
      // errors RealConnection also sees, and ignores them.
      socket.on('error', (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(toNetError(err, `connect ${host}:${port}`));
      });
      socket.once('connect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(new RealConnection(socket));
      });
    });
  }
}
