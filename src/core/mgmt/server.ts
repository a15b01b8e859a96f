// The management port of a mount (LISTEN_IP:LISTEN_PORT), speaking lessfs's
// line protocol: freeze, defrost, lockstatus, help, quit/exit. User-facing
// description: docs/management.md.
//
// Wire format (ours, documented): one command per line (LF or CRLF), matched
// case-insensitively after trimming whitespace. Every answer is zero or more
// data lines followed by exactly one status line starting `+OK` or `-ERR`; no
// data line starts with `+` or `-`, so a client reads until the first line that
// does. lessfs printed a `>` prompt and wanted telnet's CR; we print no prompt
// (it would glue itself to the next status line) and take both line ends.
//
// Differences from lessfs that matter for robustness: several sessions at once
// (lessfs served one, blocking the rest), each bounded (line length, pending
// commands, idle time, linger after close); a session is a queue, so pipelined
// commands are answered strictly in order and a slow freeze delays the answers
// behind it; freeze/defrost are serialized across sessions.
//
// Freeze is global, as in lessfs: a session that freezes and then disconnects
// (or is closed by close()) leaves the filesystem frozen until some session
// sends `defrost`. That is deliberate: a backup script that lost its control
// connection must not silently let writes resume under a half-taken snapshot.

import { utf8 } from '../bytes.ts';
import type { Clock, Connection, Listener, Logger, Net, TimerHandle } from '../drivers.ts';
import { assert, errorCode, NetError } from '../errors.ts';

export interface ManagementTarget {
  /** Commit everything and suspend all filesystem I/O until defrost. Resolves once frozen. */
  freeze(): Promise<void>;
  /** Resume I/O. Returns false if it was not frozen. */
  defrost(): boolean;
  readonly frozen: boolean;
  /** One line per inode currently write-locked by a truncation: e.g. "inode 42 locked (truncate)". Empty if none. */
  lockStatus(): string[];
}

export interface ManagementServerOptions {
  host: string;
  /** 0 picks a free port (tests); a mount with LISTEN_PORT=0 does not start the server at all. */
  port: number;
  /** Longest command line accepted, without its LF/CRLF. */
  lineBytesMax?: number;
  /** Sessions open at once; one more is told `-ERR too many connections` and closed. */
  connectionsMax?: number;
  /** A session with no input and no command in progress for this long is closed without a word. */
  idleTimeoutMs?: number;
}

export const MGMT_LINE_BYTES_MAX_DEFAULT = 1024;
export const MGMT_CONNECTIONS_MAX_DEFAULT = 16;
export const MGMT_IDLE_TIMEOUT_MS_DEFAULT = 300_000;

const LINE_BYTES_MIN = 16;
const LINE_BYTES_MAX = 64 * 1024;
const CONNECTIONS_MAX = 1024;
const IDLE_TIMEOUT_MS_MAX = 24 * 3_600_000;
/** Complete lines waiting behind a slow command; beyond it the client is flooding us. */
export const MGMT_PENDING_LINES_MAX = 64;
/** After our last word (quit, an error) the peer gets this long to close its side. */
export const MGMT_CLOSE_LINGER_MS = 10_000;
/** lockstatus lists at most this many inodes (and says how many there are). */
export const MGMT_LOCK_LINES_MAX = 4096;
const DATA_LINE_CHARS_MAX = 512;
/** Unknown commands are echoed back, shortened to this. */
const ECHO_CHARS_MAX = 80;

const LF = 0x0a;
const CR = 0x0d;

/** `help`'s data lines. The status line keeps lessfs's "valid commands:" wording for scripts that grep it. */
const HELP_LINES: readonly string[] = [
  'help        this list (also: h)',
  'freeze      commit everything and suspend all filesystem I/O until defrost',
  'defrost     resume filesystem I/O after freeze',
  'lockstatus  list the inodes write-locked by a truncation',
  'quit        close this session (also: exit)',
];
const HELP_STATUS = '+OK valid commands: defrost freeze help lockstatus quit|exit';

type Command = 'help' | 'freeze' | 'defrost' | 'lockstatus' | 'quit';

const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  ['help', 'help'],
  ['h', 'help'],
  ['freeze', 'freeze'],
  ['defrost', 'defrost'],
  ['lockstatus', 'lockstatus'],
  ['quit', 'quit'],
  ['exit', 'quit'],
]);

/** Work queued on a session, in arrival order. `final` ends the session after it is answered. */
type Item = { kind: 'line'; bytes: Uint8Array } | { kind: 'final'; status: string; why: string };

interface Answer {
  lines: string[];
  close: boolean;
  /** For the log: what the command was. */
  what: string;
}

interface ResolvedOptions {
  host: string;
  port: number;
  lineBytesMax: number;
  connectionsMax: number;
  idleTimeoutMs: number;
}

function resolveOptions(options: ManagementServerOptions): ResolvedOptions {
  const o: ResolvedOptions = {
    host: options.host,
    port: options.port,
    lineBytesMax: options.lineBytesMax ?? MGMT_LINE_BYTES_MAX_DEFAULT,
    connectionsMax: options.connectionsMax ?? MGMT_CONNECTIONS_MAX_DEFAULT,
    idleTimeoutMs: options.idleTimeoutMs ?? MGMT_IDLE_TIMEOUT_MS_DEFAULT,
  };
  if (typeof o.host !== 'string' || o.host.length === 0) {
    throw new RangeError(`ManagementServerOptions.host: ${JSON.stringify(o.host)} must be a non-empty address`);
  }
  const int = (field: keyof ResolvedOptions, min: number, max: number): void => {
    const v = o[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`ManagementServerOptions.${field}: ${String(v)} must be an integer in [${min}, ${max}]`);
    }
  };
  int('port', 0, 65535);
  int('lineBytesMax', LINE_BYTES_MIN, LINE_BYTES_MAX);
  int('connectionsMax', 1, CONNECTIONS_MAX);
  int('idleTimeoutMs', 1, IDLE_TIMEOUT_MS_MAX);
  return o;
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === CR || byte === 0x0b || byte === 0x0c;
}

/** Printable ASCII as is, anything else as \xHH: safe to echo to a terminal and to log. */
function printable(bytes: Uint8Array, charsMax: number): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x5c) s += '\\\\';
    else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += `\\x${b.toString(16).padStart(2, '0')}`;
    if (s.length >= charsMax) return `${s.slice(0, charsMax)}...`;
  }
  return s;
}

/** A line of text from the target, made safe as a data line (one line, not mistaken for a status line). */
function dataLine(text: string): string {
  let s = text.replace(/[\x00-\x1f\x7f]/g, '?');
  if (s.length > DATA_LINE_CHARS_MAX) s = `${s.slice(0, DATA_LINE_CHARS_MAX)}...`;
  if (s.startsWith('+') || s.startsWith('-')) s = ` ${s}`;
  return s;
}

/** One line of an error message for a status line. */
function oneLine(text: string): string {
  return dataLine(text).trim();
}

function describeError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = errorCode(err);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

export class ManagementServer {
  private listener: Listener | undefined;
  private readonly sessions = new Set<Session>();
  /** Connections told "too many connections", lingering until they close. */
  private readonly rejected = new Set<Connection>();
  private closing: Promise<void> | undefined;
  /** freeze/defrost run one at a time across sessions, so two freezes never overlap in the target. */
  private stateChain: Promise<unknown> = Promise.resolve();
  /** The session that froze the filesystem (for the log); undefined when not frozen by us. */
  private frozenBy: string | undefined;
  private nextSessionId = 1;

  private constructor(
    readonly clock: Clock,
    readonly logger: Logger,
    private readonly target: ManagementTarget,
    readonly options: ResolvedOptions,
  ) {}

  static async start(
    net: Net,
    clock: Clock,
    logger: Logger,
    target: ManagementTarget,
    options: ManagementServerOptions,
  ): Promise<ManagementServer> {
    const o = resolveOptions(options);
    const server = new ManagementServer(clock, logger, target, o);
    try {
      server.listener = await net.listen(o.host, o.port, (conn) => server.accept(conn));
    } catch (err) {
      const error = new NetError(errorCode(err) ?? 'EIO', `management port ${o.host}:${o.port}: ${describeError(err)}`);
      logger.log(0, error.message);
      throw error;
    }
    logger.log(2, `mgmt: listening on ${o.host}:${server.listener.port}`);
    return server;
  }

  get port(): number {
    assert(this.listener !== undefined, 'ManagementServer.port read before listening');
    return this.listener.port;
  }

  /** Sessions currently open (including ones saying goodbye). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * Stop listening and drop every session at once. A command in progress in
   * the target (a freeze) still completes there; its answer goes nowhere. The
   * filesystem's frozen state is left as it is (see the note at the top).
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.logger.log(2, `mgmt: closing (${this.sessions.size} sessions)`);
    for (const session of [...this.sessions]) session.abort('server closing');
    for (const conn of [...this.rejected]) conn.destroy();
    this.rejected.clear();
    const listener = this.listener;
    assert(listener !== undefined, 'ManagementServer.close before listening');
    await listener.close();
    if (this.frozenBy !== undefined || this.target.frozen) {
      this.logger.log(1, 'mgmt: closed while the filesystem is frozen; it stays frozen');
    }
  }

  private accept(conn: Connection): void {
    if (this.closing) {
      conn.destroy();
      return;
    }
    if (this.sessions.size >= this.options.connectionsMax) {
      this.reject(conn);
      return;
    }
    const session = new Session(this, conn, `s${this.nextSessionId++} ${conn.remote}`);
    this.sessions.add(session);
    this.logger.log(2, `mgmt ${session.name}: connected (${this.sessions.size}/${this.options.connectionsMax} sessions)`);
  }

  private reject(conn: Connection): void {
    const max = this.options.connectionsMax;
    this.logger.log(1, `mgmt ${conn.remote}: refused, ${this.sessions.size} sessions open (connectionsMax ${max})`);
    // Lingering refusals are bounded too: past that, no courtesy message.
    if (this.rejected.size >= max) {
      conn.destroy();
      return;
    }
    this.rejected.add(conn);
    const linger = this.clock.setTimer(MGMT_CLOSE_LINGER_MS, () => conn.destroy());
    conn.onData(() => {
      // Nothing this client says is read: it was refused.
    });
    conn.onClose(() => {
      linger.cancel();
      this.rejected.delete(conn);
    });
    conn.write(utf8(`-ERR too many connections (max ${max})\n`));
    conn.end();
  }

  /** @internal Session bookkeeping. */
  sessionClosed(session: Session, error: Error | undefined): void {
    const existed = this.sessions.delete(session);
    assert(existed, `session ${session.name} closed twice`);
    if (error) this.logger.log(1, `mgmt ${session.name}: connection lost: ${describeError(error)}`);
    else this.logger.log(2, `mgmt ${session.name}: disconnected`);
    if (this.frozenBy === session.name && this.target.frozen) {
      this.logger.log(1, `mgmt ${session.name}: closed with the filesystem frozen by it; it stays frozen until 'defrost'`);
    }
  }

  /** @internal Answer one queued item. Never throws: target failures become -ERR answers. */
  async execute(item: Item, session: Session): Promise<Answer> {
    if (item.kind === 'final') return { lines: [item.status], close: true, what: item.why };
    const text = this.parse(item.bytes);
    if (text.kind === 'unknown') {
      return { lines: [`-ERR unknown command '${text.echo}' (try help)`], close: false, what: `'${text.echo}'` };
    }
    const command = text.command;
    try {
      switch (command) {
        case 'help':
          return { lines: [...HELP_LINES, HELP_STATUS], close: false, what: command };
        case 'quit':
          return { lines: ['+OK bye'], close: true, what: command };
        case 'lockstatus':
          return { lines: this.lockStatus(), close: false, what: command };
        case 'freeze':
          return { lines: [await this.serialize(() => this.freeze(session))], close: false, what: command };
        case 'defrost':
          return { lines: [await this.serialize(() => this.defrost(session))], close: false, what: command };
      }
    } catch (err) {
      this.logger.log(0, `mgmt ${session.name}: ${command} failed: ${describeError(err)}`);
      return { lines: [`-ERR ${command} failed: ${oneLine(describeError(err))}`], close: false, what: command };
    }
  }

  private parse(bytes: Uint8Array): { kind: 'command'; command: Command } | { kind: 'unknown'; echo: string } {
    let start = 0;
    let end = bytes.length;
    while (start < end && isSpace(bytes[start])) start++;
    while (end > start && isSpace(bytes[end - 1])) end--;
    assert(end > start, 'blank lines are dropped before they are queued');
    const word = bytes.subarray(start, end);
    let name = '';
    for (let i = 0; i < word.length; i++) {
      const b = word[i];
      // Command names are ASCII letters; anything else (controls, non-ASCII, invalid UTF-8) cannot match.
      if (b < 0x21 || b > 0x7e) return { kind: 'unknown', echo: printable(word, ECHO_CHARS_MAX) };
      name += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
    }
    const command = COMMANDS.get(name);
    return command ? { kind: 'command', command } : { kind: 'unknown', echo: printable(word, ECHO_CHARS_MAX) };
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.stateChain.then(fn);
    // The chain only orders the next operation; this one's failure reaches its caller through `run`.
    this.stateChain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async freeze(session: Session): Promise<string> {
    if (this.target.frozen) return '-ERR already frozen';
    await this.target.freeze();
    assert(this.target.frozen, 'target.freeze() resolved but target.frozen is false');
    this.frozenBy = session.name;
    return '+OK filesystem frozen';
  }

  private async defrost(session: Session): Promise<string> {
    if (!this.target.defrost()) return '-ERR not frozen';
    assert(!this.target.frozen, 'target.defrost() returned true but target.frozen is still true');
    if (this.frozenBy !== undefined && this.frozenBy !== session.name) {
      this.logger.log(2, `mgmt ${session.name}: defrosts what ${this.frozenBy} froze`);
    }
    this.frozenBy = undefined;
    return '+OK filesystem defrosted';
  }

  private lockStatus(): string[] {
    const locks = this.target.lockStatus();
    assert(Array.isArray(locks), 'target.lockStatus() must return an array');
    const shown = locks.slice(0, MGMT_LOCK_LINES_MAX).map(dataLine);
    const count = locks.length;
    // Always "inodes", even for 1: scripts match one fixed pattern.
    const status = count > shown.length ? `+OK ${count} locked inodes (first ${shown.length} listed)` : `+OK ${count} locked inodes`;
    return [...shown, status];
  }
}

type SessionState = 'open' | 'closing' | 'closed';

/** One client connection: splits input into lines, answers them one at a time. */
class Session {
  private state: SessionState = 'open';
  /** Bytes of the line being received (no LF yet). */
  private partial: Uint8Array[] = [];
  private partialBytes = 0;
  /** False once a final item is queued: anything after it is ignored. */
  private reading = true;
  private readonly queue: Item[] = [];
  private processing = false;
  /** A command is inside the target (e.g. a slow freeze): not idle. */
  private busy = false;
  private drainWaiter: (() => void) | undefined;
  private lastActivityMs: number;
  private idleTimer: TimerHandle | undefined;
  private lingerTimer: TimerHandle | undefined;

  constructor(
    private readonly server: ManagementServer,
    private readonly conn: Connection,
    readonly name: string,
  ) {
    this.lastActivityMs = server.clock.nowMs();
    this.armIdle(server.options.idleTimeoutMs);
    conn.onData((chunk) => this.receive(chunk));
    conn.onDrain(() => this.wakeDrain());
    conn.onClose((error) => this.closed(error));
  }

  /** Drop the connection now (server closing, or something went wrong). */
  abort(why: string): void {
    if (this.state === 'closed') return;
    this.server.logger.log(2, `mgmt ${this.name}: dropped (${why})`);
    this.state = 'closed';
    this.cancelTimers();
    this.conn.destroy();
    this.wakeDrain();
  }

  private receive(chunk: Uint8Array): void {
    if (this.state !== 'open' || !this.reading) return;
    this.lastActivityMs = this.server.clock.nowMs();
    const max = this.server.options.lineBytesMax;
    let start = 0;
    for (let i = 0; i < chunk.length && this.reading; i++) {
      if (chunk[i] !== LF) continue;
      const piece = chunk.subarray(start, i);
      start = i + 1;
      let line: Uint8Array;
      if (this.partial.length === 0) {
        line = piece;
      } else {
        line = joinBytes([...this.partial, piece], this.partialBytes + piece.length);
        this.partial = [];
        this.partialBytes = 0;
      }
      const contentBytes = line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : line.length;
      if (contentBytes > max) {
        this.queueFinal(`-ERR line too long (max ${max} bytes)`, `line of ${contentBytes} bytes`);
        break;
      }
      if (isBlank(line)) continue;
      if (this.queue.length >= MGMT_PENDING_LINES_MAX) {
        this.queueFinal(`-ERR too many pending commands (max ${MGMT_PENDING_LINES_MAX})`, 'flooded');
        break;
      }
      // Copied: the driver may reuse its chunk once we return.
      this.queue.push({ kind: 'line', bytes: line.slice() });
    }
    if (this.reading && start < chunk.length) {
      const rest = chunk.subarray(start);
      // The line may still end in CR LF, so one byte of slack before calling it too long.
      if (this.partialBytes + rest.length > max + 1) {
        this.queueFinal(`-ERR line too long (max ${max} bytes)`, `line of more than ${max + 1} bytes without LF`);
      } else {
        this.partial.push(rest.slice());
        this.partialBytes += rest.length;
      }
    }
    this.kick();
  }

  private queueFinal(status: string, why: string): void {
    this.reading = false;
    this.partial = [];
    this.partialBytes = 0;
    this.queue.push({ kind: 'final', status, why });
  }

  private kick(): void {
    if (this.processing || this.queue.length === 0 || this.state !== 'open') return;
    this.processing = true;
    this.runQueue().catch((err: unknown) => {
      // execute() turns target failures into answers, so this is a bug here or in a driver.
      this.server.logger.log(0, `mgmt ${this.name}: internal error, dropping session: ${describeError(err)}`);
      this.abort('internal error');
    });
  }

  private async runQueue(): Promise<void> {
    try {
      while (this.state === 'open' && this.queue.length > 0) {
        const item = this.queue.shift() as Item;
        const answer = await this.answer(item);
        if (answer === undefined) return;
        if (answer.close) {
          this.finish();
          return;
        }
        if (!answer.sent) await new Promise<void>((resolve) => (this.drainWaiter = resolve));
      }
    } finally {
      // Cleared in the same turn as the last look at the queue, so no line can slip in unseen.
      this.processing = false;
    }
  }

  /** Run one item and send its answer; undefined when the client is gone. */
  private async answer(item: Item): Promise<{ close: boolean; sent: boolean } | undefined> {
    this.busy = true;
    let answer: Answer;
    try {
      answer = await this.server.execute(item, this);
    } finally {
      this.busy = false;
    }
    this.lastActivityMs = this.server.clock.nowMs();
    const status = answer.lines[answer.lines.length - 1];
    assert(status.startsWith('+OK') || status.startsWith('-ERR'), `answer without a status line: ${status}`);
    if (this.state !== 'open') {
      this.server.logger.log(2, `mgmt ${this.name}: ${answer.what} -> ${status} (client gone, not sent)`);
      return undefined;
    }
    this.server.logger.log(item.kind === 'final' ? 1 : 2, `mgmt ${this.name}: ${answer.what} -> ${status}`);
    const sent = this.conn.write(utf8(`${answer.lines.join('\n')}\n`));
    return { close: answer.close, sent };
  }

  /** Our last word is sent: close gracefully, but not wait forever for the peer. */
  private finish(): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    this.reading = false;
    this.idleTimer?.cancel();
    this.idleTimer = undefined;
    this.lingerTimer = this.server.clock.setTimer(MGMT_CLOSE_LINGER_MS, () => {
      this.lingerTimer = undefined;
      this.abort(`peer did not close within ${MGMT_CLOSE_LINGER_MS} ms`);
    });
    this.conn.end();
  }

  private armIdle(delayMs: number): void {
    this.idleTimer = this.server.clock.setTimer(delayMs, () => this.idleCheck());
  }

  /** One timer per session, re-armed for the remainder rather than on every byte. */
  private idleCheck(): void {
    this.idleTimer = undefined;
    if (this.state !== 'open') return;
    const idleMs = this.server.options.idleTimeoutMs;
    if (this.busy) {
      // Waiting on the target (a freeze committing) is not the client being idle.
      this.armIdle(idleMs);
      return;
    }
    const quietMs = this.server.clock.nowMs() - this.lastActivityMs;
    if (quietMs < idleMs) {
      this.armIdle(idleMs - quietMs);
      return;
    }
    this.server.logger.log(2, `mgmt ${this.name}: idle for ${quietMs} ms, closing`);
    if (this.drainWaiter) {
      // It does not read what we send either: nothing left to say gracefully.
      this.abort('idle and not reading');
    } else {
      this.finish();
    }
  }

  private wakeDrain(): void {
    const waiter = this.drainWaiter;
    this.drainWaiter = undefined;
    waiter?.();
  }

  private cancelTimers(): void {
    this.idleTimer?.cancel();
    this.idleTimer = undefined;
    this.lingerTimer?.cancel();
    this.lingerTimer = undefined;
  }

  private closed(error: Error | undefined): void {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.cancelTimers();
    this.wakeDrain();
    if (wasOpen && this.queue.length > 0) {
      this.server.logger.log(2, `mgmt ${this.name}: ${this.queue.length} commands not run, client gone`);
    }
    this.queue.length = 0;
    this.server.sessionClosed(this, error);
  }
}

function isBlank(line: Uint8Array): boolean {
  for (let i = 0; i < line.length; i++) if (!isSpace(line[i])) return false;
  return true;
}

function joinBytes(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  assert(offset === length, `joinBytes: ${offset} != ${length}`);
  return out;
}
