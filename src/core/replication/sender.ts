// A live master's sender (docs/replication-protocol.md): connects to the slave,
// handshakes (fs id, block size, version, HMAC proofs when a secret is set),
// streams replog.dta from the transaction after the slave's, pipelined within a
// window, resends after a NAK behind a RESYNC marker, tells the slave when to
// commit (never while the master commits), trims the log once everything is
// acknowledged, and reconnects with capped backoff after any failure.

import { BUGGIFY_OFF, type Buggify } from '../buggify.ts';
import { ScratchBuffers } from '../bytes.ts';
import type { Clock, Connection, Logger, Net, Primitives, Rng, TimerHandle } from '../drivers.ts';
import type { FsEngine } from '../fs/engine.ts';
import { ReplogError } from './errors.ts';
import { FRAME_TYPE, type Frame } from './frames.ts';
import type { MasterLog } from './master-log.ts';
import {
  decodeAck,
  decodeHello,
  encodeCommitNow,
  decodeText,
  encodeHeartbeat,
  encodeHello,
  masterProof,
  NONCE_BYTES,
  proofsEqual,
  sessionKey,
  slaveProof,
  WireIn,
  WireOut,
} from './wire.ts';

export interface LiveTiming {
  heartbeatMs: number;
  /** Nothing heard from the peer for this long: the connection is dead (half-open). */
  peerTimeoutMs: number;
  handshakeTimeoutMs: number;
  connectTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  /** The longest a master commit waits for a slave commit it asked for. */
  slaveCommitWaitMs: number;
  /** Changes idle this long on a live master are committed (and so sent). */
  idleCommitMs: number;
}

export const LIVE_TIMING_DEFAULT: Readonly<LiveTiming> = Object.freeze({
  heartbeatMs: 1000,
  peerTimeoutMs: 6000,
  handshakeTimeoutMs: 5000,
  connectTimeoutMs: 5000,
  backoffMinMs: 100,
  backoffMaxMs: 5000,
  slaveCommitWaitMs: 10_000,
  idleCommitMs: 500,
});

/** Bytes sent beyond what the slave reported applied. */
export const SEND_WINDOW_BYTES = 32 * 1024 * 1024;
/** Bytes read from replog.dta per send (at least two of the largest frames). */
const SEND_CHUNK_BYTES = 2 * 1024 * 1024;
/** Send buffers kept for reuse: what the window keeps in flight. */
const SEND_BUFFERS_KEPT = 24;
/** A slave sends only HELLO, ACK and NAK: a longer frame is damage, not a reason to wait for a MiB. */
const SLAVE_FRAME_BYTES_MAX = 4096;
/** A commit request is sent behind at most this much data in flight. */
const COMMIT_REQUEST_IN_FLIGHT_MAX_BYTES = 1024 * 1024;
/**
 * Records (frames) sent since the last commit request after which the slave
 * is asked to commit even with data in flight (a catch-up); sending pauses
 * at a transaction boundary at twice this until it is asked. What a slave
 * holds uncommitted stays far below the store's 2^20 operations per commit.
 */
export const CATCH_UP_COMMIT_RECORDS = 1 << 16;
/** The same in bytes sent (large blocks: what a slave crash makes it take again). */
export const CATCH_UP_COMMIT_BYTES = 256 * 1024 * 1024;
/** NAKs without progress before the connection is dropped. */
export const NAKS_MAX = 8;

export interface SenderOptions {
  host: string;
  port: number;
  fsId: string;
  blockSizeBytes: number;
  secret: Uint8Array | undefined;
  enabled: boolean;
  /** 0: unlimited. */
  maxBacklogBytes: number;
  /** CATCH_UP_COMMIT_RECORDS and _BYTES unless set (a simulation with a small store op limit). */
  catchUpCommitRecords?: number;
  catchUpCommitBytes?: number;
  timing?: Partial<LiveTiming>;
  /** Rare-path hooks (simulation only). */
  buggify?: Buggify;
}

export interface SenderDrivers {
  net: Net;
  clock: Clock;
  logger: Logger;
  primitives: Primitives;
  rng: Rng;
}

type State = 'disabled' | 'connecting' | 'handshake' | 'streaming' | 'backoff' | 'stopped';

interface Session {
  conn: Connection;
  out: WireOut;
  in: WireIn;
  closed: boolean;
  lastHeardMs: number;
  /** The txn being sent, and how many of its bytes are sent (a large transaction goes in pieces). */
  sendTxn: number;
  sendInTxn: number;
  /** Last txn the slave applied (in its cache), and bytes it received of the next one. */
  appliedTxn: number;
  pendingBytes: number;
  epoch: number;
  naks: number;
  /** Set by a NAK: check referenced extents against their logged CRCs from now on. */
  verifyExtents: boolean;
  draining: Promise<void> | undefined;
  pumping: boolean;
  heartbeat: TimerHandle | undefined;
  nonceM: Uint8Array;
  handshaking: boolean;
  drainWaiters: Array<() => void>;
  /** Frames and bytes sent since the last commit request: what the slave's next commit holds, about. */
  recordsSinceAsk: number;
  bytesSinceAsk: number;
}

export class LiveSender {
  private state: State = 'connecting';
  /**
   * Buffers the stream is read into, back here once the socket has sent them:
   * on these VMs fresh memory costs ~2 s of system time per GiB touched.
   */
  private readonly sendBuffers: ScratchBuffers;
  private session: Session | undefined;
  private readonly timing: LiveTiming;
  private backoffMs: number;
  private timer: TimerHandle | undefined;
  private idleTimer: TimerHandle | undefined;
  private enabledFlag: boolean;
  private stopped = false;
  /** Last txn the slave acknowledged as durable (0 until it reported: see slaveReported). */
  ackedTxn = 0;
  /**
   * A slave has answered a HELLO since this mount: until then nothing is
   * known of it, and status shows "-" rather than ackedTxn's 0.
   */
  slaveReported = false;
  /** The slave was told to commit and has not answered. */
  private slaveCommitting: { id: number; sinceMs: number; waiters: Array<() => void> } | undefined;
  private nextCommitId = 1;
  private masterCommitting = false;
  private lastMasterCommitEndMs = 0;
  private lastSlaveCommitMs = 0;
  /** Half the master's commit interval, at least a second (DESIGN §4: commits offset from the master's). */
  private readonly slaveCommitGapMs: number;
  private readonly catchUpRecords: number;
  private readonly catchUpBytes: number;
  /** Writers waiting for the backlog to shrink (MAX_BACKLOG_SIZE). */
  private backlogWaiters: Array<() => void> = [];
  lastError: string | undefined;
  private lastLoggedError: string | undefined;
  /** The master's clock when each unacknowledged txn was committed (lag). */
  private readonly committedAtMs = new Map<number, number>();
  private idleSeenChanges = -1;
  private readonly bug: Buggify;
  stats = { connects: 0, naksReceived: 0, bytesSent: 0, slaveCommits: 0, trims: 0 };
  /** The last slave commit request this master stopped waiting for (it then commits anyway). */
  abandonedCommitId: number | undefined;

  constructor(
    private readonly drivers: SenderDrivers,
    private readonly log: MasterLog,
    private readonly engine: FsEngine,
    private readonly options: SenderOptions,
  ) {
    this.timing = { ...LIVE_TIMING_DEFAULT, ...options.timing };
    this.sendBuffers = new ScratchBuffers(SEND_BUFFERS_KEPT, 64 * 1024, SEND_CHUNK_BYTES + 2 * options.blockSizeBytes);
    this.slaveCommitGapMs = Math.max(1000, Math.floor(engine.options.commitIntervalMs / 2));
    this.catchUpRecords = options.catchUpCommitRecords ?? CATCH_UP_COMMIT_RECORDS;
    this.catchUpBytes = options.catchUpCommitBytes ?? CATCH_UP_COMMIT_BYTES;
    for (const [name, v] of [['catchUpCommitRecords', this.catchUpRecords], ['catchUpCommitBytes', this.catchUpBytes]] as const) {
      if (!(Number.isSafeInteger(v) && v >= 1)) throw new RangeError(`${name} must be an integer >= 1, got ${v}`);
    }
    this.backoffMs = this.timing.backoffMinMs;
    this.enabledFlag = options.enabled;
    this.bug = options.buggify ?? BUGGIFY_OFF;
    log.coordinator = {
      beforeMasterCommit: () => this.beforeMasterCommit(),
      afterMasterCommit: (txn) => this.afterMasterCommit(txn),
      masterCommitEnded: () => this.masterCommitEnded(),
    };
    if (options.maxBacklogBytes > 0) {
      engine.writeThrottle = () => this.throttle();
      engine.writesHeld = () => this.held;
    }
    // Transactions of an earlier mount still in the log: their COMMITs' times (lag after a remount).
    for (const [txn, ms] of log.recoveredCommitTimes) this.committedAtMs.set(txn, ms);
  }

  start(): void {
    if (this.engine.recovered) {
      // The last incarnation crashed and may have asked the slave to commit
      // just before: until the slave answers a HELLO (it does so only after its
      // commits end) or the wait runs out, this master's commits wait.
      this.slaveCommitting = { id: 0, sinceMs: this.drivers.clock.nowMs(), waiters: [] };
    }
    if (!this.enabledFlag) {
      this.state = 'disabled';
      this.drivers.logger.log(1, 'replication disabled: the master logs but does not send');
    } else {
      this.arm(0);
    }
    this.armIdleCommit();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    this.timer?.cancel();
    this.idleTimer?.cancel();
    this.closeSession('stopping', true);
    this.releaseSlaveCommit();
    this.releaseBacklog(true);
  }

  get enabled(): boolean {
    return this.enabledFlag;
  }

  setEnabled(on: boolean): void {
    if (on === this.enabledFlag) return;
    this.enabledFlag = on;
    this.drivers.logger.log(1, on ? 'replication enabled: connecting to the slave, the backlog drains' : 'replication disabled: the master keeps logging, nothing is sent');
    if (on) {
      this.backoffMs = this.timing.backoffMinMs;
      this.arm(0);
    } else {
      this.timer?.cancel();
      this.closeSession('replication disabled');
      this.state = 'disabled';
      this.releaseBacklog(true);
    }
  }

  get connectionState(): string {
    return this.state;
  }

  /** Anything committed on the master that the slave has not acknowledged as durable. */
  get backlog(): boolean {
    return this.ackedTxn < this.log.committedTxn;
  }

  get backlogBytes(): number {
    return this.log.bytesAfter(this.ackedTxn);
  }

  /**
   * Seconds since the oldest transaction the slave has not acknowledged was
   * committed; undefined while unknown (no slave has reported since this mount).
   */
  lagSeconds(): number | undefined {
    if (!this.slaveReported) return undefined;
    if (!this.backlog) return 0;
    const at = this.committedAtMs.get(this.ackedTxn + 1);
    return at === undefined ? undefined : Math.max(0, (this.drivers.clock.nowMs() - at) / 1000);
  }

  /** The slave's applied txn (its durable one without a connection). */
  get slaveAppliedTxn(): number {
    return this.session?.appliedTxn ?? this.ackedTxn;
  }

  // ------------------------------------------------------------ commit coordination

  private async beforeMasterCommit(): Promise<void> {
    // From here no new commit request goes to the slave (maybeAskSlaveCommit),
    // and one it is answering is waited for: never inside a commit at the same instant.
    this.masterCommitting = true;
    for (let c = this.slaveCommitting; c; c = this.slaveCommitting) {
      const waited = await new Promise<boolean>((resolve) => {
        const timer = this.drivers.clock.setTimer(Math.max(0, c.sinceMs + this.timing.slaveCommitWaitMs - this.drivers.clock.nowMs()), () => resolve(false));
        c.waiters.push(() => {
          timer.cancel();
          resolve(true);
        });
      });
      if (!waited && this.slaveCommitting === c) {
        this.note(
          c.id === 0
            ? `no slave answered within ${this.timing.slaveCommitWaitMs} ms of this master's recovery (the crashed incarnation may have asked it to commit): committing without waiting for it${this.session ? '; dropping the connection' : ''}`
            : `the slave did not finish the commit it was asked for within ${this.timing.slaveCommitWaitMs} ms: dropping the connection`,
        );
        this.abandonedCommitId = c.id;
        this.closeSession('slave commit timeout');
        this.releaseSlaveCommit();
      }
    }
  }


  private afterMasterCommit(txn: number): void {
    this.committedAtMs.set(txn, this.drivers.clock.nowMs());
    const s = this.session;
    if (s && this.state === 'streaming') void this.pump(s);
  }

  /** The master's commit is over (done or failed): the slave may commit what it applied. */
  private masterCommitEnded(): void {
    this.masterCommitting = false;
    this.lastMasterCommitEndMs = this.drivers.clock.nowMs();
    const s = this.session;
    if (s && this.state === 'streaming') {
      this.maybeAskSlaveCommit(s);
      this.maybeAskCatchUpCommit(s);
    }
  }

  /**
   * The slave commits what it has applied, between the master's commits: at
   * most once per half a commit interval while the master keeps committing
   * (each slave commit holds up the master's next one), and at once when the
   * master has gone quiet.
   */
  private maybeAskSlaveCommit(s: Session): void {
    if (s.appliedTxn <= this.ackedTxn || this.slaveCommitting || this.masterCommitting) return;
    const now = this.drivers.clock.nowMs();
    const quiet = now - this.lastMasterCommitEndMs >= this.timing.heartbeatMs;
    const due = now - this.lastSlaveCommitMs >= this.slaveCommitGapMs;
    // The request queues behind what is in flight: on a slow link it would
    // hold up the master's next commit until that data has crossed.
    const inFlight = this.log.startOf(s.sendTxn) + s.sendInTxn - (this.log.startOf(s.appliedTxn + 1) + s.pendingBytes);
    if ((quiet && inFlight === 0) || (due && inFlight <= COMMIT_REQUEST_IN_FLIGHT_MAX_BYTES)) this.askSlaveCommit(s);
  }

  /**
   * A slave catching up a backlog: the master streams without pause, so
   * neither condition of maybeAskSlaveCommit holds and the slave would apply
   * the whole backlog into one uncommitted state (its memory grows with it,
   * and past the store's operations per commit its commit fails for ever).
   * After catchUpRecords frames (or catchUpBytes) sent since the last request it is asked to
   * commit, in flight or not: the request queues behind those frames, so the
   * slave commits the whole transactions among them (still never while the
   * master commits). Nothing happens below the bound (traces unchanged).
   */
  private maybeAskCatchUpCommit(s: Session): void {
    if (this.catchUpShare(s.recordsSinceAsk, s.bytesSinceAsk) < 1) return;
    if (s.sendTxn - 1 <= this.ackedTxn) {
      // Every whole transaction sent is durable on the slave already (its
      // last commit took more than its request covered): it holds none of them.
      s.recordsSinceAsk = 0;
      s.bytesSinceAsk = 0;
      void this.pump(s);
      return;
    }
    if (this.slaveCommitting || this.masterCommitting) return;
    this.askSlaveCommit(s);
    void this.pump(s);
  }

  /** What was sent since the last commit request, in catch-up bounds (1: ask; 2: pause). */
  private catchUpShare(records: number, bytes: number): number {
    return Math.max(records / this.catchUpRecords, bytes / this.catchUpBytes);
  }

  private askSlaveCommit(s: Session): void {
    s.recordsSinceAsk = 0;
    s.bytesSinceAsk = 0;
    this.lastSlaveCommitMs = this.drivers.clock.nowMs();
    const id = this.nextCommitId++;
    this.slaveCommitting = { id, sinceMs: this.drivers.clock.nowMs(), waiters: [] };
    this.send(s, FRAME_TYPE.COMMIT_NOW, s.appliedTxn, encodeCommitNow(id));
  }

  /** The request was lost with the frames before a RESYNC: ask again (it is released only by the answer to the newest). */
  private reaskSlaveCommit(s: Session): void {
    const c = this.slaveCommitting;
    if (!c) return;
    c.id = this.nextCommitId++;
    this.send(s, FRAME_TYPE.COMMIT_NOW, s.appliedTxn, encodeCommitNow(c.id));
  }

  private releaseSlaveCommit(): void {
    const c = this.slaveCommitting;
    this.slaveCommitting = undefined;
    for (const w of c?.waiters ?? []) w();
  }

  /** Commit changes that stopped arriving, so they reach the slave without waiting for COMMIT_INTERVAL. */
  private armIdleCommit(): void {
    if (this.stopped) return;
    this.idleTimer = this.drivers.clock.setTimer(this.timing.idleCommitMs, () => {
      const changes = this.engine.pendingChanges;
      const idle = changes > 0 && changes === this.idleSeenChanges;
      this.idleSeenChanges = changes;
      const run = idle && this.enabledFlag && this.state === 'streaming' ? this.engine.commit('replication') : Promise.resolve();
      run.then(
        () => this.armIdleCommit(),
        (err: unknown) => {
          this.note(`commit for replication failed: ${(err as Error).message}`);
          this.armIdleCommit();
        },
      );
    });
  }

  // ------------------------------------------------------------ backlog throttle

  /** Is the backlog over MAX_BACKLOG_SIZE with replication enabled (changes wait)? */
  private get held(): boolean {
    return this.enabledFlag && this.backlogBytes > this.options.maxBacklogBytes;
  }

  private throttle(): Promise<void> | undefined {
    if (!this.held) return undefined;
    return new Promise((resolve) => this.backlogWaiters.push(resolve));
  }

  private releaseBacklog(all: boolean): void {
    if (this.backlogWaiters.length === 0) return;
    if (!all && this.backlogBytes > this.options.maxBacklogBytes) return;
    const w = this.backlogWaiters;
    this.backlogWaiters = [];
    for (const f of w) f();
  }

  // ------------------------------------------------------------ connection

  private arm(delayMs: number): void {
    this.timer?.cancel();
    if (this.stopped || !this.enabledFlag) return;
    this.timer = this.drivers.clock.setTimer(delayMs, () => {
      this.timer = undefined;
      void this.connect();
    });
  }

  private note(message: string): void {
    this.lastError = message;
    if (message !== this.lastLoggedError) this.drivers.logger.log(0, `replication: ${message}`);
    this.lastLoggedError = message;
  }

  private retryLater(): void {
    if (this.stopped || !this.enabledFlag) return;
    this.state = 'backoff';
    const jitter = this.drivers.rng.int(Math.max(1, Math.floor(this.backoffMs / 4)));
    this.arm(this.backoffMs + jitter);
    this.backoffMs = Math.min(this.timing.backoffMaxMs, this.backoffMs * 2);
  }

  private async connect(): Promise<void> {
    if (this.stopped || !this.enabledFlag || this.session) return;
    this.state = 'connecting';
    const { host, port } = this.options;
    let conn: Connection;
    try {
      conn = await this.drivers.net.connect(host, port, { timeoutMs: this.timing.connectTimeoutMs });
    } catch (err) {
      this.note(`cannot connect to the slave at ${host}:${port}: ${(err as Error).message}; retrying`);
      this.retryLater();
      return;
    }
    if (this.stopped || !this.enabledFlag) {
      conn.destroy();
      return;
    }
    this.stats.connects++;
    const s: Session = {
      conn,
      out: new WireOut(this.drivers.primitives),
      in: new WireIn(this.drivers.primitives, undefined, SLAVE_FRAME_BYTES_MAX),
      closed: false,
      lastHeardMs: this.drivers.clock.nowMs(),
      sendTxn: 0,
      sendInTxn: 0,
      appliedTxn: 0,
      pendingBytes: 0,
      epoch: 0,
      naks: 0,
      verifyExtents: false,
      draining: undefined,
      pumping: false,
      heartbeat: undefined,
      nonceM: this.drivers.rng.bytes(NONCE_BYTES),
      handshaking: true,
      drainWaiters: [],
      recordsSinceAsk: 0,
      bytesSinceAsk: 0,
    };
    this.session = s;
    this.state = 'handshake';
    conn.onClose((err) => this.onClosed(s, err));
    conn.onData((chunk) => this.onData(s, chunk));
    conn.onDrain(() => this.drained(s));
    const nonceM = s.nonceM;
    this.send(s, FRAME_TYPE.HELLO, 0, encodeHello({ stage: 1, version: 1, blockSizeBytes: this.options.blockSizeBytes, fsId: this.options.fsId, nonce: nonceM, auth: this.options.secret !== undefined }));
    this.armHeartbeat(s);
  }

  private drained(s: Session): void {
    const w = s.drainWaiters;
    s.drainWaiters = [];
    for (const f of w) f();
  }

  private onClosed(s: Session, err?: Error): void {
    if (s.closed) return;
    s.closed = true;
    this.drained(s);
    s.heartbeat?.cancel();
    if (this.session === s) this.session = undefined;
    // A commit the slave may still be running is waited for (bounded) by the
    // next master commit, or ends before the slave answers a new HELLO.
    if (err) this.note(`connection to the slave lost: ${err.message}`);
    if (!this.stopped && this.enabledFlag) this.retryLater();
  }

  /** Close the connection: at once (queued frames dropped), or gracefully at unmount. */
  private closeSession(why: string, graceful = false): void {
    const s = this.session;
    if (!s) return;
    this.drivers.logger.log(2, `replication: closing the connection to the slave (${why})`);
    if (graceful) s.conn.end();
    else s.conn.destroy();
    this.onClosed(s);
  }

  /** A buggify site dropped the connection: reconnect at once (a reconnect storm when it keeps firing). */
  private buggifyDrop(s: Session, why: string): void {
    this.drivers.logger.log(2, `replication: dropping the connection to the slave (buggify: ${why})`);
    this.backoffMs = this.timing.backoffMinMs;
    s.conn.destroy();
    this.onClosed(s);
  }

  private fail(s: Session, message: string): void {
    this.note(message);
    s.conn.destroy();
    this.onClosed(s);
  }

  private send(s: Session, type: number, txn: number, payload: Uint8Array): boolean {
    if (s.closed) return false;
    return s.conn.write(s.out.frame(type, txn, payload));
  }

  private armHeartbeat(s: Session): void {
    s.heartbeat = this.drivers.clock.setTimer(this.timing.heartbeatMs, () => {
      if (s.closed) return;
      const now = this.drivers.clock.nowMs();
      const limit = this.state === 'handshake' ? this.timing.handshakeTimeoutMs : this.timing.peerTimeoutMs;
      if (now - s.lastHeardMs > limit) {
        this.fail(s, `nothing heard from the slave for ${now - s.lastHeardMs} ms: dropping the connection`);
        return;
      }
      const c = this.slaveCommitting;
      if (c && now - c.sinceMs > this.timing.slaveCommitWaitMs) {
        this.fail(s, `the slave did not answer a commit request within ${this.timing.slaveCommitWaitMs} ms: dropping the connection`);
        return;
      }
      if (this.state === 'streaming') {
        this.send(s, FRAME_TYPE.HEARTBEAT, this.log.committedTxn, encodeHeartbeat(now));
        // A slave that caught up while the master is idle still gets its commit.
        this.maybeAskSlaveCommit(s);
        this.maybeAskCatchUpCommit(s);
      }
      this.armHeartbeat(s);
    });
  }

  private onData(s: Session, chunk: Uint8Array): void {
    if (s.closed) return;
    try {
      s.in.push(chunk);
      for (let f = s.in.next(); f && !s.closed; f = s.in.next()) {
        // Only whole, valid frames count as hearing from the slave.
        s.lastHeardMs = this.drivers.clock.nowMs();
        this.onFrame(s, f);
      }
    } catch (err) {
      this.fail(s, `bad frame from the slave: ${(err as Error).message}`);
    }
  }

  private onFrame(s: Session, f: Frame): void {
    if (this.state === 'handshake') {
      this.onHandshake(s, f);
      return;
    }
    switch (f.type) {
      case FRAME_TYPE.ACK: {
        const a = decodeAck(f.payload);
        if (f.txn > this.log.committedTxn || a.appliedTxn < f.txn) {
          this.fail(s, `the slave acknowledged txn ${f.txn} (applied ${a.appliedTxn}) beyond what was sent (${this.log.committedTxn})`);
          return;
        }
        if (a.appliedTxn > s.appliedTxn || (a.appliedTxn === s.appliedTxn && a.pendingBytes > s.pendingBytes)) s.naks = 0;
        if (a.appliedTxn >= s.appliedTxn) {
          s.appliedTxn = a.appliedTxn;
          s.pendingBytes = a.pendingBytes;
        }
        if (f.txn > this.ackedTxn) this.acknowledge(f.txn);
        if (a.committed && this.slaveCommitting && a.commitId >= this.slaveCommitting.id) {
          this.stats.slaveCommits++;
          this.releaseSlaveCommit();
        }
        this.maybeAskCatchUpCommit(s);
        void this.pump(s);
        return;
      }
      case FRAME_TYPE.NAK: {
        const why = decodeText(f.payload, 'NAK');
        this.stats.naksReceived++;
        if (++s.naks > NAKS_MAX) {
          this.fail(s, `the slave refused ${s.naks} frames in a row (last: ${why}): dropping the connection`);
          return;
        }
        if (f.txn < this.log.firstTxn || f.txn > this.log.committedTxn + 1) {
          this.fail(s, `the slave asks for txn ${f.txn}, which replog.dta does not hold (${this.log.firstTxn}..${this.log.committedTxn})`);
          return;
        }
        this.drivers.logger.log(1, `replication: the slave refused a frame (${why}); resending from txn ${f.txn}`);
        s.epoch++;
        s.verifyExtents = true;
        s.sendTxn = f.txn;
        s.sendInTxn = 0;
        s.appliedTxn = Math.min(s.appliedTxn, f.txn - 1);
        s.pendingBytes = 0;
        s.conn.write(s.out.resync(s.epoch));
        this.reaskSlaveCommit(s);
        void this.pump(s);
        return;
      }
      default:
        this.fail(s, `unexpected frame type ${f.type} from the slave`);
    }
  }

  private acknowledge(txn: number): void {
    for (let t = this.ackedTxn + 1; t <= txn; t++) this.committedAtMs.delete(t);
    this.ackedTxn = txn;
    this.log.acknowledged(txn);
    this.backoffMs = this.timing.backoffMinMs;
    this.releaseBacklog(false);
    if (txn >= this.log.committedTxn) {
      void this.engine
        .withCommitLock(async () => {
          if (await this.log.trimIfAcked(this.ackedTxn)) this.stats.trims++;
        })
        .catch((err: unknown) => this.note(`trimming replog.dta: ${(err as Error).message}`));
    }
  }

  private onHandshake(s: Session, f: Frame): void {
    if (f.type === FRAME_TYPE.NAK) {
      this.fail(s, `the slave refused the connection: ${decodeText(f.payload, 'NAK')}`);
      return;
    }
    if (!s.handshaking || f.type !== FRAME_TYPE.HELLO) {
      this.fail(s, `expected HELLO from the slave, got frame type ${f.type}`);
      return;
    }
    const h = decodeHello(f.payload);
    const nonceM = s.nonceM;
    {
      if (h.stage !== 2) {
        this.fail(s, `expected HELLO stage 2 from the slave, got stage ${h.stage}`);
        return;
      }
      if (h.refused) {
        // Answered, like an acceptance, after the slave's commits in progress ended: a master commit need not wait for one.
        this.releaseSlaveCommit();
        this.fail(s, `the slave refused the connection: ${h.message}`);
        return;
      }
      const secret = this.options.secret;
      if (secret) {
        if (h.proof.length === 0) {
          this.fail(s, 'the slave did not prove REPLICATION_SECRET (is it set on the slave?): refusing it');
          return;
        }
        if (!proofsEqual(h.proof, slaveProof(this.drivers.primitives, secret, nonceM, h.nonce))) {
          this.fail(s, 'the slave\'s proof of REPLICATION_SECRET is wrong: refusing it');
          return;
        }
      } else if (h.proof.length > 0) {
        this.fail(s, 'the slave expects REPLICATION_SECRET, which this master does not have');
        return;
      }
      if (h.fsId !== '' && h.fsId !== this.options.fsId) {
        this.fail(s, `the slave replicates filesystem ${h.fsId}, this master is ${this.options.fsId} (split-brain guard): refusing it`);
        return;
      }
      if (h.durableTxn > this.log.committedTxn || h.appliedTxn > this.log.committedTxn) {
        this.fail(s, `the slave is at txn ${h.appliedTxn}, ahead of this master's ${this.log.committedTxn}: another master wrote to it (split-brain guard); re-seed the slave`);
        return;
      }
      if (h.appliedTxn + 1 < this.log.firstTxn) {
        this.fail(s, `the slave is at txn ${h.appliedTxn} but replog.dta starts at txn ${this.log.firstTxn}: the slave must be re-seeded from a copy of the master`);
        return;
      }
      this.send(s, FRAME_TYPE.HELLO, 0, encodeHello({ stage: 3, proof: secret ? masterProof(this.drivers.primitives, secret, nonceM, h.nonce) : new Uint8Array(0) }));
      if (secret) {
        const key = sessionKey(this.drivers.primitives, secret, nonceM, h.nonce);
        s.out.macKey = key;
        s.in.macKey = key;
      }
      s.handshaking = false;
      // The slave answered HELLO after any commit it was running: none is running now.
      this.releaseSlaveCommit();
      for (const t of [...this.committedAtMs.keys()]) if (t <= h.durableTxn) this.committedAtMs.delete(t);
      this.ackedTxn = h.durableTxn;
      this.slaveReported = true;
      this.log.acknowledged(h.durableTxn);
      s.appliedTxn = h.appliedTxn;
      s.sendTxn = h.appliedTxn + 1;
      s.sendInTxn = 0;
      this.state = 'streaming';
      this.lastLoggedError = undefined;
      this.drivers.logger.log(1, `replication: connected to the slave at ${this.options.host}:${this.options.port} (${secret ? 'authenticated' : 'unauthenticated: no REPLICATION_SECRET'}); slave at txn ${h.appliedTxn} (durable ${h.durableTxn}), master at ${this.log.committedTxn}`);
      if (h.durableTxn > 0 && h.durableTxn >= this.log.committedTxn) this.acknowledge(h.durableTxn);
      void this.pump(s);
      this.maybeAskSlaveCommit(s);
      if (this.bug.fires('drop-after-hello')) this.buggifyDrop(s, 'right after the handshake');
    }
  }

  /**
   * Send committed transactions from (sendTxn, sendInTxn) on, in reads of up
   * to SEND_CHUNK_BYTES, within the window, cut at frame boundaries (on an
   * authenticated link each frame gets its MAC).
   */
  private async pump(s: Session): Promise<void> {
    if (s.pumping || s.closed || this.state !== 'streaming') return;
    s.pumping = true;
    try {
      while (!s.closed && s.sendTxn <= this.log.committedTxn) {
        // A catch-up whose commit request cannot go yet (the master or the
        // slave is committing) waits at a transaction boundary: whole
        // transactions reach the slave, so it can commit what it holds.
        if (s.sendInTxn === 0 && this.catchUpShare(s.recordsSinceAsk, s.bytesSinceAsk) >= 2) return;
        const windowStart = s.appliedTxn + 1 >= this.log.firstTxn ? this.log.startOf(s.appliedTxn + 1) + s.pendingBytes : this.log.startOf(this.log.firstTxn);
        const from = this.log.startOf(s.sendTxn) + s.sendInTxn;
        if (from - windowStart >= SEND_WINDOW_BYTES) return;
        const end = this.log.startOf(this.log.committedTxn + 1);
        const to = Math.min(end, from + SEND_CHUNK_BYTES);
        const epoch = s.epoch;
        // After a NAK the stream is resent with every referenced extent checked
        // against its logged CRC: the slave refused it, so tell a damaged data
        // file (an error here) from a damaged link (the slave accepts it now).
        const bufBytes = SEND_CHUNK_BYTES + 2 * this.options.blockSizeBytes;
        let pooled: Uint8Array | undefined;
        const bytes = await this.log.read(from, to, s.verifyExtents, (n) => {
          if (n > bufBytes) return new Uint8Array(n);
          pooled = this.sendBuffers.take(n);
          return pooled;
        });
        const giveBack = (): void => {
          if (pooled) this.sendBuffers.give(pooled);
          pooled = undefined;
        };
        if (s.closed) return;
        // A NAK during the read restarted the stream behind a RESYNC marker: what was read is stale.
        if (epoch !== s.epoch) {
          giveBack();
          continue;
        }
        // Pieces end at frame boundaries: heartbeats and commit requests go
        // between frames, never inside one.
        let sent = 0;
        const ends: number[] = [];
        // A catch-up piece ends with the transaction that reaches the bound
        // (the commit request goes right behind it) or twice it (a pause).
        const before = this.catchUpShare(s.recordsSinceAsk, s.bytesSinceAsk);
        for (let o = 0; o + 4 <= bytes.length; ) {
          const size = 8 + new DataView(bytes.buffer, bytes.byteOffset + o, 4).getUint32(0);
          if (o + size > bytes.length) break;
          const type = bytes[o + 8];
          o += size;
          ends.push(o);
          sent = o;
          if (type !== FRAME_TYPE.COMMIT) continue;
          const after = this.catchUpShare(s.recordsSinceAsk + ends.length, s.bytesSinceAsk + o);
          if ((before < 1 && after >= 1) || after >= 2) break;
        }
        if (sent === 0) throw new ReplogError('EFRAME', `replog.dta at ${from}: no whole frame in ${bytes.length} bytes`);
        let ok: boolean;
        if (s.out.authenticated) {
          ok = true;
          let o = 0;
          for (const e of ends) {
            ok = s.conn.write(s.out.raw(bytes.subarray(o, e))) && ok;
            o = e;
          }
          giveBack();
        } else {
          // Bytes read for this send only: handed over without a copy, back once sent.
          ok = s.conn.write(bytes.subarray(0, sent), true, giveBack);
        }
        this.stats.bytesSent += sent;
        s.recordsSinceAsk += ends.length;
        s.bytesSinceAsk += sent;
        if (this.bug.fires('drop-mid-stream')) {
          this.buggifyDrop(s, `after sending ${sent} bytes from offset ${from}`);
          return;
        }
        const at = from + sent;
        while (s.sendTxn <= this.log.committedTxn && this.log.startOf(s.sendTxn + 1) <= at) s.sendTxn++;
        s.sendInTxn = at - this.log.startOf(s.sendTxn);
        this.maybeAskCatchUpCommit(s);
        if (!ok) await new Promise<void>((resolve) => s.drainWaiters.push(resolve));
      }
    } catch (err) {
      this.fail(s, `sending replog.dta: ${(err as Error).message}`);
    } finally {
      s.pumping = false;
    }
  }
}
