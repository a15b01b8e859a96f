// Simulated network: per-connection ordered byte streams between named hosts,
// on the Scheduler's virtual clock, with seeded faults (latency, stalls,
// bandwidth, bit flips, resets) and turmoil-style verbs on pairs of hosts
// (partition/repair, hold/release, crashHost).
//
// Model, in short:
// - A connection is two endpoints; each direction is a Flow: a FIFO "wire" of
//   items (synack, data, fin, rst) with arrival times. Exactly one pump event per
//   flow delivers its head, under the receiving host's Domain, so order is TCP's
//   even when latency draws would reorder chunks.
// - A blocked link (partition or hold) leaves the head on the wire; nothing is
//   lost (TCP retransmits). A partition that outlasts `partitionTimeoutMs` breaks
//   the connections across it with ETIMEDOUT on each side.
// - Send-buffer accounting: bytes count against the writer until the peer's
//   application has been handed them (a receive window), acknowledged after a
//   latency draw. So a peer that has not registered onData pushes back.
// - Callbacks (onConnection, onData, onDrain, onClose) only ever run from
//   scheduler events, never inline inside a call the application made.

import type { Connection, Listener, Net } from '../core/drivers.ts';
import { assert, NetError, AssertionError } from '../core/errors.ts';
import type { SimRng } from './rng.ts';
import type { Domain, Scheduler } from './scheduler.ts';

/** The fault model of a SimNetwork; every field is checked when built. */
export interface SimNetOptions {
  /** Latency per delivered chunk (and per handshake/ack), uniform in [min, max], integer ms. */
  latencyMsMin: number;
  latencyMsMax: number;
  /** Per delivered data chunk: flip one random bit of it. */
  bitFlipProbability: number;
  /** Per delivered data chunk: reset the connection instead (ECONNRESET on both sides). */
  resetProbability: number;
  /** Per sent data chunk: hold that direction until the chunk's arrival + 1..stallMsMax ms (overlapping stalls do not add up). */
  stallProbability: number;
  stallMsMax: number;
  /** Per-direction bandwidth; 0 = unlimited. */
  bandwidthBytesPerMs: number;
  /** write() returns false once this many bytes are unconsumed by the peer; onDrain when below again. */
  sendBufferHighWaterBytes: number;
  /** A writer that ignores backpressure past this is a bug: write() throws ENOBUFS. */
  sendBufferBytesMax: number;
  /** Writes are cut into chunks of at most this many bytes. */
  segmentBytesMax: number;
  /** Per chunk: cut it at a random point instead (exercises the reader's framing). */
  splitProbability: number;
  /** Connect timeout when the caller gives none. */
  connectTimeoutMs: number;
  /** An established connection across a partition this long breaks with ETIMEDOUT. */
  partitionTimeoutMs: number;
  /** Open connections per host (both ends count); beyond it connect/accept fail with EMFILE. */
  connectionsPerHostMax: number;
}

export const SIM_NET_DEFAULTS: Readonly<SimNetOptions> = Object.freeze({
  latencyMsMin: 1,
  latencyMsMax: 5,
  bitFlipProbability: 0,
  resetProbability: 0,
  stallProbability: 0,
  stallMsMax: 200,
  bandwidthBytesPerMs: 0,
  sendBufferHighWaterBytes: 64 * 1024,
  sendBufferBytesMax: 256 * 1024 * 1024,
  segmentBytesMax: 64 * 1024,
  splitProbability: 0,
  connectTimeoutMs: 5_000,
  partitionTimeoutMs: 30_000,
  connectionsPerHostMax: 1024,
});

const CONNECT_TIMEOUT_MS_MAX = 600_000;
const EPHEMERAL_PORT_FIRST = 49152;
const PORT_MAX = 65535;

/** Fill defaults and validate; throws RangeError naming the offending field. */
export function simNetOptions(partial: Partial<SimNetOptions> = {}): SimNetOptions {
  for (const key of Object.keys(partial)) {
    if (!(key in SIM_NET_DEFAULTS)) throw new RangeError(`SimNetOptions.${key}: unknown option`);
  }
  const o: SimNetOptions = { ...SIM_NET_DEFAULTS, ...partial };
  const int = (field: keyof SimNetOptions, min: number, max = Number.MAX_SAFE_INTEGER): void => {
    const v = o[field];
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`SimNetOptions.${field}: ${v} must be an integer in [${min}, ${max}]`);
    }
  };
  const probability = (field: keyof SimNetOptions): void => {
    const v = o[field];
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) {
      throw new RangeError(`SimNetOptions.${field}: ${v} must be a probability in [0, 1]`);
    }
  };
  int('latencyMsMin', 0, 3_600_000);
  int('latencyMsMax', 0, 3_600_000);
  if (o.latencyMsMax < o.latencyMsMin) {
    throw new RangeError(`SimNetOptions.latencyMsMax: ${o.latencyMsMax} is below latencyMsMin ${o.latencyMsMin}`);
  }
  probability('bitFlipProbability');
  probability('resetProbability');
  probability('stallProbability');
  probability('splitProbability');
  int('stallMsMax', 1, 3_600_000);
  if (typeof o.bandwidthBytesPerMs !== 'number' || !Number.isFinite(o.bandwidthBytesPerMs) || o.bandwidthBytesPerMs < 0) {
    throw new RangeError(`SimNetOptions.bandwidthBytesPerMs: ${o.bandwidthBytesPerMs} must be a finite number >= 0`);
  }
  int('sendBufferHighWaterBytes', 1);
  int('sendBufferBytesMax', 1);
  if (o.sendBufferBytesMax < o.sendBufferHighWaterBytes) {
    throw new RangeError(
      `SimNetOptions.sendBufferBytesMax: ${o.sendBufferBytesMax} is below sendBufferHighWaterBytes ${o.sendBufferHighWaterBytes}`,
    );
  }
  int('segmentBytesMax', 1, 16 * 1024 * 1024);
  int('connectTimeoutMs', 1, CONNECT_TIMEOUT_MS_MAX);
  int('partitionTimeoutMs', 1, 24 * 3_600_000);
  int('connectionsPerHostMax', 1, 1_000_000);
  return o;
}

// ---------------------------------------------------------------- internals

type WireItem =
  | { kind: 'synack' }
  | { kind: 'data'; bytes: Uint8Array }
  | { kind: 'fin' }
  | { kind: 'rst' };

interface InFlight {
  item: WireItem;
  arriveAtMs: number;
}

/** One direction of a connection. */
class Flow {
  readonly wire: InFlight[] = [];
  /** Arrival time of the last item put on the wire: later items never arrive before it. */
  wireTailMs = 0;
  /** When the (bandwidth-limited) link finishes sending what it has been given. */
  linkFreeAtMs = 0;
  pump: { cancel(): void } | undefined;
  constructor(
    readonly from: SimConnection,
    readonly to: SimConnection,
    readonly rng: SimRng,
  ) {}

  get label(): string {
    return `${this.from.connId} ${this.from.local}>${this.to.local}`;
  }
}

interface ConnectAttempt {
  pending: boolean;
  timer: { cancel(): void } | undefined;
  resolve(conn: Connection): void;
  reject(error: Error): void;
}

class SimListener implements Listener {
  closed = false;
  constructor(
    private readonly host: SimHost,
    readonly port: number,
    readonly onConnection: (conn: Connection) => void,
  ) {}

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      if (this.host.listeners.get(this.port) === this) this.host.listeners.delete(this.port);
    }
    return Promise.resolve();
  }
}

/** One host incarnation: a crash ends it; `SimNetwork.host` again starts the next. */
class SimHost implements Net {
  readonly listeners = new Map<number, SimListener>();
  readonly endpoints = new Set<SimConnection>();
  readonly portsInUse = new Set<number>();
  crashed = false;
  private nextEphemeralPort = EPHEMERAL_PORT_FIRST;

  constructor(
    readonly network: SimNetwork,
    readonly address: string,
    readonly domain: Domain,
  ) {}

  listen(host: string, port: number, onConnection: (conn: Connection) => void): Promise<Listener> {
    this.assertUp('listen');
    if (host !== this.address && host !== '0.0.0.0') {
      return Promise.reject(new NetError('EADDRNOTAVAIL', `listen ${host}:${port}: host ${this.address} has no such address`));
    }
    if (!Number.isInteger(port) || port < 0 || port > PORT_MAX) {
      return Promise.reject(new NetError('EINVAL', `listen ${host}:${port}: bad port`));
    }
    let chosen = port;
    if (port === 0) {
      const free = this.ephemeralPort();
      if (free === undefined) return Promise.reject(new NetError('EADDRINUSE', `listen ${host}:0: no free port`));
      chosen = free;
    } else if (this.listeners.has(port) || this.portsInUse.has(port)) {
      return Promise.reject(new NetError('EADDRINUSE', `listen ${host}:${port}: port in use`));
    }
    const listener = new SimListener(this, chosen, onConnection);
    this.listeners.set(chosen, listener);
    this.network.scheduler.trace(`net listen ${this.address}:${chosen}`);
    return Promise.resolve(listener);
  }

  connect(host: string, port: number, options?: { timeoutMs?: number }): Promise<Connection> {
    this.assertUp('connect');
    return this.network.connectFrom(this, host, port, options?.timeoutMs);
  }

  /** A free local port, or undefined when all are taken. */
  ephemeralPort(): number | undefined {
    const span = PORT_MAX - EPHEMERAL_PORT_FIRST + 1;
    for (let i = 0; i < span; i++) {
      const p = this.nextEphemeralPort;
      this.nextEphemeralPort = p === PORT_MAX ? EPHEMERAL_PORT_FIRST : p + 1;
      if (!this.listeners.has(p) && !this.portsInUse.has(p)) return p;
    }
    return undefined;
  }

  private assertUp(what: string): void {
    // A crashed incarnation's code never runs again (its domain is dead), so
    // reaching here is a harness bug, not a network condition.
    if (this.crashed) throw new AssertionError(`${what} on crashed host ${this.address}`);
  }
}

class SimConnection implements Connection {
  readonly remote: string;
  readonly local: string;
  peer: SimConnection | undefined;
  out: Flow | undefined;
  /** Written by this side and not yet consumed by the peer's application. */
  bufferedBytes = 0;
  needDrain = false;
  /** The application called end() or destroy(): further writes are its bug. */
  appClosed = false;
  /** A fin has been queued on `out`. */
  localEnded = false;
  /** A fin arrived from the peer. */
  remoteEnded = false;
  closed = false;
  closeError: Error | undefined;
  closeNotified = false;
  established: boolean;
  readonly ownsLocalPort: boolean;
  attempt: ConnectAttempt | undefined;
  private inbox: Uint8Array[] = [];
  private flushScheduled = false;
  private dataHandler: ((chunk: Uint8Array) => void) | undefined;
  private drainHandler: (() => void) | undefined;
  private closeHandler: ((error?: Error) => void) | undefined;

  constructor(
    readonly network: SimNetwork,
    readonly host: SimHost,
    readonly connId: string,
    readonly localPort: number,
    remote: string,
    /** Server ends are established at accept; client ends at synack. Client ends own their ephemeral port. */
    established: boolean,
  ) {
    this.local = `${host.address}:${localPort}`;
    this.remote = remote;
    this.established = established;
    this.ownsLocalPort = !established;
  }

  write(data: Uint8Array, _owned?: boolean, onSent?: () => void): boolean {
    const ok = this.writeCopy(data);
    // Copied (or dropped): the caller may reuse its buffer now.
    onSent?.();
    return ok;
  }

  private writeCopy(data: Uint8Array): boolean {
    if (this.appClosed) throw new NetError('EPIPE', `write after end/destroy on ${this.local}>${this.remote}`);
    if (!(this.established)) throw new AssertionError(`write on connection ${this.connId} before it is established`);
    // Closed under us (reset, timeout, peer close): the cause reaches onClose.
    if (this.closed) return false;
    const opts = this.network.options;
    if (this.bufferedBytes + data.length > opts.sendBufferBytesMax) {
      throw new NetError(
        'ENOBUFS',
        `write of ${data.length} bytes on ${this.local}>${this.remote}: ${this.bufferedBytes} already buffered, ` +
          `sendBufferBytesMax ${opts.sendBufferBytesMax} (writer ignores backpressure)`,
      );
    }
    const out = this.out as Flow;
    let offset = 0;
    while (offset < data.length) {
      const remaining = data.length - offset;
      let size = Math.min(remaining, opts.segmentBytesMax);
      if (size > 1 && out.rng.chance(opts.splitProbability)) size = 1 + out.rng.int(size - 1);
      // Copy: the caller may reuse its buffer once write() returns.
      this.network.send(out, { kind: 'data', bytes: data.slice(offset, offset + size) });
      offset += size;
    }
    this.bufferedBytes += data.length;
    const ok = this.bufferedBytes < opts.sendBufferHighWaterBytes;
    if (!ok) this.needDrain = true;
    return ok;
  }

  end(): void {
    this.appClosed = true;
    if (this.closed || this.localEnded) return;
    this.localEnded = true;
    this.network.send(this.out as Flow, { kind: 'fin' });
  }

  destroy(): void {
    this.appClosed = true;
    if (this.closed) return;
    const out = this.out;
    if (out) {
      // Abortive close: what has not arrived yet is dropped, the peer gets a reset.
      this.network.dropUnarrived(out);
      if (this.peer && !this.peer.closed) this.network.send(out, { kind: 'rst' });
    }
    this.network.closeEndpoint(this, undefined, 0);
  }

  onData(handler: (chunk: Uint8Array) => void): void {
    if (!(this.dataHandler === undefined)) throw new AssertionError(`onData registered twice on ${this.connId}`);
    this.dataHandler = handler;
    if (this.inbox.length > 0 || this.remoteEnded) this.scheduleFlush();
  }

  onDrain(handler: () => void): void {
    if (!(this.drainHandler === undefined)) throw new AssertionError(`onDrain registered twice on ${this.connId}`);
    this.drainHandler = handler;
  }

  onClose(handler: (error?: Error) => void): void {
    if (!(this.closeHandler === undefined)) throw new AssertionError(`onClose registered twice on ${this.connId}`);
    this.closeHandler = handler;
    if (this.closed && !this.closeNotified) this.scheduleCloseNotify(0);
  }

  // ---- called by the network, always from an event under this host's domain

  receiveData(bytes: Uint8Array): void {
    if (this.dataHandler && this.inbox.length === 0 && !this.flushScheduled) {
      this.consume(bytes);
    } else {
      this.inbox.push(bytes);
    }
  }

  receiveFin(): void {
    this.remoteEnded = true;
    if (this.inbox.length === 0) this.finishRemoteEnd();
  }

  dropInbox(): void {
    this.inbox = [];
  }

  scheduleCloseNotify(delayMs: number): void {
    this.network.scheduler.schedule(
      delayMs,
      `net close ${this.connId} ${this.local}`,
      () => {
        if (this.closeNotified || !this.closeHandler) return;
        this.closeNotified = true;
        this.closeHandler(this.closeError);
      },
      this.host.domain,
    );
  }

  /** The peer consumed n of our bytes. */
  acknowledged(n: number): void {
    this.bufferedBytes -= n;
    if (!(this.bufferedBytes >= 0)) throw new AssertionError(`send buffer of ${this.connId} went negative`);
    if (this.closed || !this.needDrain) return;
    if (this.bufferedBytes < this.network.options.sendBufferHighWaterBytes) {
      this.needDrain = false;
      this.drainHandler?.();
    }
  }

  private consume(bytes: Uint8Array): void {
    const handler = this.dataHandler as (chunk: Uint8Array) => void;
    this.network.acknowledge(this, bytes.length);
    handler(bytes);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.network.scheduler.schedule(
      0,
      `net flush ${this.connId} ${this.local}`,
      () => {
        this.flushScheduled = false;
        // The handler may destroy the connection mid-flush; stop handing out data then.
        while (this.inbox.length > 0 && !this.closed) this.consume(this.inbox.shift() as Uint8Array);
        if (this.remoteEnded && this.inbox.length === 0) this.finishRemoteEnd();
      },
      this.host.domain,
    );
  }

  /** The peer's fin arrived and everything before it was consumed: close (sending our fin if not yet). */
  private finishRemoteEnd(): void {
    if (this.closed) return;
    if (!this.localEnded) {
      // As Node with allowHalfOpen=false: a peer's end ends our side too.
      this.localEnded = true;
      this.network.send(this.out as Flow, { kind: 'fin' });
    }
    this.network.closeEndpoint(this, undefined, 0);
  }
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

interface ParkedSyn {
  from: string;
  to: string;
  deliver: () => void;
}

/**
 * A simulated network of hosts on one Scheduler. Every event runs under the
 * domain of the host whose callback it runs; every draw comes from `rng`.
 */
export class SimNetwork {
  readonly options: SimNetOptions;
  private readonly hosts = new Map<string, SimHost>();
  private readonly partitions = new Map<string, number>();
  private readonly holds = new Set<string>();
  private readonly parkedSyns: ParkedSyn[] = [];
  /** Flows whose head is waiting on a blocked link (their sender may be closed already, a fin in flight). */
  private readonly blockedFlows = new Set<Flow>();
  private partitionEpoch = 0;
  private nextConnId = 1;

  constructor(
    readonly scheduler: Scheduler,
    private readonly rng: SimRng,
    options: Partial<SimNetOptions> = {},
  ) {
    this.options = simNetOptions(options);
  }

  /** The Net of host `address` for the incarnation living in `domain`. */
  host(address: string, domain: Domain): Net {
    if (typeof address !== 'string' || address.length === 0 || address.includes(':') || address.includes('|')) {
      throw new RangeError(`SimNetwork.host: bad address ${JSON.stringify(address)}`);
    }
    if (!(domain.alive)) throw new AssertionError(`SimNetwork.host(${address}): domain ${domain.name} is dead`);
    const existing = this.hosts.get(address);
    if (existing && !existing.crashed) {
      // The caller killed the old incarnation's domain without crashHost: do it now.
      if (existing.domain.alive) throw new AssertionError(`SimNetwork.host(${address}): host is already up in domain ${existing.domain.name}`);
      this.crashHost(address);
    }
    const host = new SimHost(this, address, domain);
    this.hosts.set(address, host);
    this.scheduler.trace(`net host-up ${address} ${domain.name}`);
    return host;
  }

  /** Sever a and b: nothing crosses until repair; connects time out; long partitions break connections. */
  partition(a: string, b: string): void {
    if (!(a !== b)) throw new AssertionError(`partition(${a}, ${b}): a host cannot be partitioned from itself`);
    const key = pairKey(a, b);
    const epoch = ++this.partitionEpoch;
    this.partitions.set(key, epoch);
    this.scheduler.trace(`net partition ${key}`);
    for (const ep of this.endpointsBetween(a, b)) {
      this.scheduler.schedule(
        this.options.partitionTimeoutMs,
        `net partition-timeout ${ep.connId} ${ep.local}`,
        () => {
          if (this.partitions.get(key) !== epoch || ep.closed) return;
          this.scheduler.trace(`net partition-timeout ${ep.connId} ${ep.local}`);
          this.closeEndpoint(ep, new NetError('ETIMEDOUT', `connection ${ep.local}>${ep.remote}: partitioned for ${this.options.partitionTimeoutMs} ms`), 0);
        },
        ep.host.domain,
      );
    }
  }

  repair(a: string, b: string): void {
    const key = pairKey(a, b);
    this.partitions.delete(key);
    this.scheduler.trace(`net repair ${key}`);
    this.unblock(a, b);
  }

  /** Delay everything between a and b (without loss, without timeouts) until release. */
  hold(a: string, b: string): void {
    if (!(a !== b)) throw new AssertionError(`hold(${a}, ${b}): a host cannot be held from itself`);
    const key = pairKey(a, b);
    this.holds.add(key);
    this.scheduler.trace(`net hold ${key}`);
  }

  release(a: string, b: string): void {
    const key = pairKey(a, b);
    this.holds.delete(key);
    this.scheduler.trace(`net release ${key}`);
    this.unblock(a, b);
  }

  /**
   * The host's process died: its listeners close, its own callbacks never run
   * again, and each peer gets a reset after the bytes already in flight.
   */
  crashHost(address: string): void {
    const host = this.hosts.get(address);
    if (!(host !== undefined)) throw new AssertionError(`crashHost(${address}): no such host`);
    if (host.crashed) return;
    host.crashed = true;
    host.domain.kill();
    this.scheduler.trace(`net crash ${address}`);
    for (const listener of [...host.listeners.values()]) void listener.close();
    for (const ep of [...host.endpoints]) {
      const out = ep.out;
      if (out && ep.peer && !ep.peer.closed) this.send(out, { kind: 'rst' });
      if (ep.attempt) ep.attempt.pending = false;
      ep.closed = true;
      ep.closeNotified = true;
      this.releaseEndpoint(ep);
    }
  }

  /** Open connection endpoints (on `address`, or everywhere). */
  connectionCount(address?: string): number {
    let n = 0;
    for (const host of this.hosts.values()) {
      if (address === undefined || host.address === address) n += host.endpoints.size;
    }
    return n;
  }

  // ---------------------------------------------------------------- internals

  /** @internal */
  connectFrom(client: SimHost, host: string, port: number, timeoutMs: number | undefined): Promise<Connection> {
    if (!Number.isInteger(port) || port < 1 || port > PORT_MAX) {
      return Promise.reject(new NetError('EINVAL', `connect ${host}:${port}: bad port`));
    }
    const timeout = timeoutMs ?? this.options.connectTimeoutMs;
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > CONNECT_TIMEOUT_MS_MAX) {
      return Promise.reject(new NetError('EINVAL', `connect ${host}:${port}: timeoutMs ${timeout} not in (0, ${CONNECT_TIMEOUT_MS_MAX}]`));
    }
    if (client.endpoints.size >= this.options.connectionsPerHostMax) {
      return Promise.reject(new NetError('EMFILE', `connect ${host}:${port}: ${client.address} has ${client.endpoints.size} connections`));
    }
    const localPort = client.ephemeralPort();
    if (localPort === undefined) return Promise.reject(new NetError('EADDRNOTAVAIL', `connect ${host}:${port}: no free local port`));

    return new Promise<Connection>((resolve, reject) => {
      const connId = `c${this.nextConnId++}`;
      const ep = new SimConnection(this, client, connId, localPort, `${host}:${port}`, false);
      client.endpoints.add(ep);
      client.portsInUse.add(localPort);
      const attempt: ConnectAttempt = { pending: true, timer: undefined, resolve, reject };
      ep.attempt = attempt;
      this.scheduler.trace(`net connect ${connId} ${ep.local}>${host}:${port}`);

      attempt.timer = this.scheduler.schedule(
        timeout,
        `net connect-timeout ${connId}`,
        () => {
          if (!attempt.pending) return;
          this.scheduler.trace(`net connect-timeout ${connId} ${ep.local}>${host}:${port}`);
          const out = ep.out;
          if (out && ep.peer && !ep.peer.closed) this.send(out, { kind: 'rst' });
          this.closeEndpoint(ep, new NetError('ETIMEDOUT', `connect ${host}:${port}: no answer within ${timeout} ms`), 0);
        },
        client.domain,
      );

      const server = this.hosts.get(host);
      if (!server || server.crashed) {
        // Nobody answers for a dead or unknown address: the timeout decides.
        this.scheduler.trace(`net syn-lost ${connId} ${host} is down`);
        return;
      }
      const deliverSyn = (): void => {
        this.scheduler.schedule(
          this.latency(this.rng),
          `net syn ${connId} ${ep.local}>${host}:${port}`,
          () => this.arriveSyn(ep, server, port),
          server.domain,
        );
      };
      deliverSyn();
    });
  }

  private arriveSyn(client: SimConnection, server: SimHost, port: number): void {
    const attempt = client.attempt as ConnectAttempt;
    if (!attempt.pending || client.host.crashed) return;
    if (this.blocked(client.host.address, server.address)) {
      this.scheduler.trace(`net syn-held ${client.connId}`);
      this.parkedSyns.push({
        from: client.host.address,
        to: server.address,
        deliver: () => {
          if (server.crashed) return;
          this.scheduler.schedule(this.latency(this.rng), `net syn ${client.connId}`, () => this.arriveSyn(client, server, port), server.domain);
        },
      });
      return;
    }
    const listener = server.listeners.get(port);
    const refuse = (code: string, why: string): void => {
      this.scheduler.trace(`net refuse ${client.connId} ${server.address}:${port} ${code}`);
      this.scheduler.schedule(
        this.latency(this.rng),
        `net refused ${client.connId}`,
        () => {
          if (!attempt.pending) return;
          this.closeEndpoint(client, new NetError(code, `connect ${server.address}:${port}: ${why}`), 0);
        },
        client.host.domain,
      );
    };
    if (!listener || listener.closed) return refuse('ECONNREFUSED', 'nobody listens');
    if (server.endpoints.size >= this.options.connectionsPerHostMax) return refuse('ECONNREFUSED', 'server at connectionsPerHostMax');

    const sep = new SimConnection(this, server, client.connId, port, client.local, true);
    server.endpoints.add(sep);
    client.peer = sep;
    sep.peer = client;
    client.out = new Flow(client, sep, this.rng.split(`flow:${client.connId}:c`));
    sep.out = new Flow(sep, client, this.rng.split(`flow:${client.connId}:s`));
    this.send(sep.out, { kind: 'synack' });
    listener.onConnection(sep);
  }

  /** Put an item on the wire of `flow` (always in order behind what is there). */
  send(flow: Flow, item: WireItem): void {
    const o = this.options;
    const now = this.scheduler.nowMs();
    let sentAtMs = now;
    if (item.kind === 'data' && o.bandwidthBytesPerMs > 0) {
      const start = Math.max(now, flow.linkFreeAtMs);
      flow.linkFreeAtMs = start + item.bytes.length / o.bandwidthBytesPerMs;
      sentAtMs = flow.linkFreeAtMs;
    }
    let arriveAtMs = sentAtMs + this.latency(flow.rng);
    if (item.kind === 'data' && flow.rng.chance(o.stallProbability)) {
      const stallMs = 1 + flow.rng.int(o.stallMsMax);
      this.scheduler.trace(`net stall ${flow.label} ${stallMs}ms`);
      // The direction is held until this chunk's arrival + stallMs: everything
      // behind it waits, but stalls that overlap do not add up (summed per
      // chunk, a fast sender's stalls outgrew the clock and the link never
      // drained: seed 23 with every buggify site on, 1000 ops).
      flow.wireTailMs = Math.max(flow.wireTailMs, arriveAtMs + stallMs);
    }
    arriveAtMs = Math.max(arriveAtMs, flow.wireTailMs);
    flow.wireTailMs = arriveAtMs;
    flow.wire.push({ item, arriveAtMs });
    if (!flow.pump) this.schedulePump(flow);
  }

  clearWire(flow: Flow): void {
    flow.wire.length = 0;
    flow.pump?.cancel();
    flow.pump = undefined;
    this.blockedFlows.delete(flow);
  }

  /**
   * destroy(): drop what has not arrived, except a synack still on its way: the
   * kernel completed that handshake before the application saw the connection,
   * so the client's connect succeeds (and then sees the reset), as with TCP.
   */
  dropUnarrived(flow: Flow): void {
    const head = flow.wire[0];
    if (head?.item.kind === 'synack') {
      flow.wire.length = 1;
    } else {
      this.clearWire(flow);
    }
  }

  /** The peer's application consumed n bytes of `ep`'s peer's stream: ack the writer after a latency. */
  acknowledge(reader: SimConnection, n: number): void {
    const writer = reader.peer;
    if (!writer || writer.closed || writer.host.crashed) return;
    this.scheduler.schedule(this.latency((writer.out as Flow).rng), `net ack ${writer.connId} ${writer.local} ${n}`, () => writer.acknowledged(n), writer.host.domain);
  }

  /**
   * Mark `ep` closed now (its state), notify its application after delayMs (an
   * event under its domain). With an error the close is abortive: its unread
   * input and its unsent output are dropped.
   */
  closeEndpoint(ep: SimConnection, error: Error | undefined, notifyDelayMs: number): void {
    if (ep.closed) return;
    ep.closed = true;
    ep.closeError = error;
    if (error) {
      ep.dropInbox();
      if (ep.out) this.clearWire(ep.out);
    }
    this.releaseEndpoint(ep);
    const attempt = ep.attempt;
    if (attempt?.pending) {
      attempt.pending = false;
      attempt.timer?.cancel();
      ep.closeNotified = true; // never handed out: the rejection is its only report
      attempt.reject(error ?? new NetError('ECONNRESET', `connect ${ep.remote}: closed before established`));
      return;
    }
    ep.scheduleCloseNotify(notifyDelayMs);
  }

  private releaseEndpoint(ep: SimConnection): void {
    ep.host.endpoints.delete(ep);
    // Only a client end holds an ephemeral port; a server end shares its listener's.
    if (ep.ownsLocalPort) ep.host.portsInUse.delete(ep.localPort);
  }

  private schedulePump(flow: Flow): void {
    const head = flow.wire[0];
    assert(head !== undefined, 'schedulePump on an empty wire');
    const delayMs = Math.max(0, head.arriveAtMs - this.scheduler.nowMs());
    const kind = head.item.kind === 'data' ? `data ${head.item.bytes.length}` : head.item.kind;
    flow.pump = this.scheduler.schedule(delayMs, `net ${kind} ${flow.label}`, () => this.pumpOne(flow), flow.to.host.domain);
  }

  private pumpOne(flow: Flow): void {
    flow.pump = undefined;
    const head = flow.wire[0];
    if (!head) return;
    const dst = flow.to;
    if (dst.closed) {
      this.clearWire(flow);
      return;
    }
    // Left on the wire; repair/release restarts the pump.
    if (this.blocked(flow.from.host.address, dst.host.address)) {
      this.blockedFlows.add(flow);
      return;
    }
    flow.wire.shift();
    this.deliver(flow, head.item);
    if (flow.wire.length > 0 && !flow.pump) this.schedulePump(flow);
  }

  private deliver(flow: Flow, item: WireItem): void {
    const dst = flow.to;
    const src = flow.from;
    switch (item.kind) {
      case 'synack': {
        const attempt = dst.attempt as ConnectAttempt;
        if (!attempt.pending) return;
        attempt.pending = false;
        attempt.timer?.cancel();
        dst.established = true;
        dst.attempt = undefined;
        attempt.resolve(dst);
        return;
      }
      case 'data': {
        const o = this.options;
        if (flow.rng.chance(o.resetProbability)) {
          this.scheduler.trace(`net reset ${flow.label} instead of ${item.bytes.length} bytes`);
          const reset = (ep: SimConnection): NetError =>
            new NetError('ECONNRESET', `connection ${ep.local}>${ep.remote} reset by the network`);
          this.closeEndpoint(dst, reset(dst), 0);
          this.closeEndpoint(src, reset(src), this.latency(flow.rng));
          return;
        }
        let bytes = item.bytes;
        if (bytes.length > 0 && flow.rng.chance(o.bitFlipProbability)) {
          const bit = flow.rng.int(bytes.length * 8);
          bytes[bit >>> 3] ^= 1 << (bit & 7);
          this.scheduler.trace(`net bitflip ${flow.label} bit ${bit} of ${bytes.length} bytes`);
        }
        dst.receiveData(bytes);
        return;
      }
      case 'fin':
        dst.receiveFin();
        return;
      case 'rst':
        this.closeEndpoint(dst, new NetError('ECONNRESET', `connection ${dst.local}>${dst.remote} reset by peer`), 0);
        return;
    }
  }

  private blocked(a: string, b: string): boolean {
    if (a === b) return false;
    const key = pairKey(a, b);
    return this.partitions.has(key) || this.holds.has(key);
  }

  private unblock(a: string, b: string): void {
    if (this.blocked(a, b)) return;
    const now = this.scheduler.nowMs();
    const key = pairKey(a, b);
    for (const flow of [...this.blockedFlows]) {
      if (pairKey(flow.from.host.address, flow.to.host.address) !== key) continue;
      this.blockedFlows.delete(flow);
      if (flow.pump || flow.wire.length === 0 || flow.to.closed || flow.to.host.crashed) continue;
      // Held bytes come through after a retransmission's worth of latency.
      const head = flow.wire[0];
      head.arriveAtMs = Math.max(head.arriveAtMs, now + this.latency(flow.rng));
      flow.wireTailMs = Math.max(flow.wireTailMs, head.arriveAtMs);
      this.schedulePump(flow);
    }
    for (let i = 0; i < this.parkedSyns.length; ) {
      const syn = this.parkedSyns[i];
      if (pairKey(syn.from, syn.to) === key) {
        this.parkedSyns.splice(i, 1);
        syn.deliver();
      } else {
        i++;
      }
    }
  }

  /** Open endpoints of connections between hosts a and b, in a deterministic order. */
  private endpointsBetween(a: string, b: string): SimConnection[] {
    const result: SimConnection[] = [];
    for (const address of [a, b]) {
      const host = this.hosts.get(address);
      if (!host || host.crashed) continue;
      for (const ep of host.endpoints) {
        const peer = ep.peer;
        if (!peer) continue;
        const other = address === a ? b : a;
        if (peer.host.address === other) result.push(ep);
      }
    }
    return result;
  }

  private latency(rng: SimRng): number {
    const { latencyMsMin: min, latencyMsMax: max } = this.options;
    return min === max ? min : min + rng.int(max - min + 1);
  }
}
