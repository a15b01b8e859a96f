// A live slave's receiver (docs/replication-protocol.md): listens for its
// master, checks the handshake (version, block size, the adopted fs id as a
// split-brain guard, HMAC proofs when a secret is set), applies each
// transaction as it completes, commits only when the master says, and
// acknowledges what is durable. A bad frame is NAKed and the stream skipped to
// the master's RESYNC marker; garbage, foreign masters and wrong versions are
// refused and logged without disturbing the slave. A failure of its own
// disks (full, an I/O error) drops what is not durable and refuses the master
// until it may take the stream again; a stopped engine (a failed data fsync)
// refuses it until a remount.

import { BUGGIFY_OFF, buggifyDelay, type Buggify } from '../buggify.ts';
import type { Clock, Connection, Listener, Logger, Net, Primitives, Rng, TimerHandle } from '../drivers.ts';
import type { FsEngine } from '../fs/engine.ts';
import { RepeatLimiter } from '../repeat-limiter.ts';
import { assert, FsError } from '../errors.ts';
import { ReplogError } from './errors.ts';
import { FRAME_TYPE, TransactionAssembler, type Frame } from './frames.ts';
import { IO_RETRY_MAX_MS, ioRetryWaitMs, RoomWait } from './room-wait.ts';
import { LIVE_TIMING_DEFAULT, type LiveTiming } from './sender.ts';
import { toReplicatedTxn, type SlaveApplier, type SlaveReplicationMeta } from './slave.ts';
import {
  decodeCommitNow,
  decodeHeartbeat,
  decodeHello,
  encodeAck,
  encodeHello,
  encodeText,
  masterProof,
  NONCE_BYTES,
  proofsEqual,
  sessionKey,
  slaveProof,
  WireIn,
  WireOut,
} from './wire.ts';

/** Applied bytes between progress ACKs (the master's send window moves with them). */
const PROGRESS_ACK_BYTES = 4 * 1024 * 1024;
/** A staged block's bytes in its record (they went to the engine when it arrived). */
const STAGED = new Uint8Array(0);
/** Connections waiting for their handshake at once; more are refused. */
const PENDING_CONNECTIONS_MAX = 8;
/** Why a live slave stopped taking its master's transactions (a full disk, an I/O error of its disks), and when it takes them again. */
interface Stall {
  /** 'space': until room appears (wait); 'io': at resumeAtMs. */
  kind: 'space' | 'io';
  reason: string;
  /** The drop of uncommitted transactions, then the free space measured after it. */
  settled: Promise<void>;
  /** When the stream resumes (the room measured after the drop); undefined until measured, or when the drop failed. */
  wait: RoomWait | undefined;
  /** When an I/O error's stream resumes; undefined until the drop ended. */
  resumeAtMs: number | undefined;
  /** What the master is told when it is refused. */
  refusal: string;
}

export interface ReceiverOptions {
  host: string;
  port: number;
  blockSizeBytes: number;
  secret: Uint8Array | undefined;
  enabled: boolean;
  timing?: Partial<LiveTiming>;
  /** Rare-path hooks (simulation only). */
  buggify?: Buggify;
}

export interface ReceiverDrivers {
  net: Net;
  clock: Clock;
  logger: Logger;
  primitives: Primitives;
  rng: Rng;
}

interface Session {
  conn: Connection;
  in: WireIn;
  out: WireOut;
  closed: boolean;
  handshaking: boolean;
  nonceS: Uint8Array;
  nonceM: Uint8Array | undefined;
  masterFsId: string;
  acceptedMs: number;
  lastHeardMs: number;
  lastAckMs: number;
  timer: TimerHandle | undefined;
  assembler: TransactionAssembler | undefined;
  epoch: number;
  sinceAckBytes: number;
  /** Bytes received of the transaction being assembled. */
  pendingBytes: number;
  /** A progress ACK waits for the engine's data writes to catch up. */
  ackAfterWrites: boolean;
}

export class LiveReceiver {
  private listener: Listener | undefined;
  private active: Session | undefined;
  private readonly pending = new Set<Session>();
  /** Pending connections past HELLO stage 1 (a master reconnecting). */
  private readonly handoffs = new Set<Session>();
  private readonly timing: LiveTiming;
  private enabledFlag: boolean;
  private stopped = false;
  private releaseHold: (() => void) | undefined;
  /** Last master txn applied to the write cache (>= the durable one). */
  appliedTxn = 0;
  /** Last master txn made durable by a commit of this slave (what an ACK may claim). */
  durableTxn = 0;
  /** The newest COMMIT_NOW asked for, and the newest answered. */
  private wantCommitId = 0;
  private doneCommitId = 0;
  private commitLoop: Promise<void> | undefined;
  /** The commit request the commit running now answers. */
  servingCommitId: number | undefined;
  lastError: string | undefined;
  lastHeartbeatMasterMs = 0;
  stats = { connections: 0, refused: 0, naksSent: 0, transactions: 0, commits: 0, stalls: 0, ioErrors: 0 };
  /** Set while a full disk or an I/O error keeps this slave from taking its master's transactions. */
  private stall: Stall | undefined;
  /** I/O errors of this slave's disks in a row (no commit succeeded since), and since when. */
  private ioFailures = 0;
  private ioSinceMs = 0;
  /** Set once this slave takes no transactions until it is remounted (its engine stopped): what it tells the master. */
  private halted: string | undefined;
  /** Log lines of repeated events (a master refused every few seconds while the disk stays full). */
  private readonly repeats: RepeatLimiter;
  private readonly bug: Buggify;

  constructor(
    private readonly drivers: ReceiverDrivers,
    private readonly engine: FsEngine,
    private readonly applier: SlaveApplier,
    private readonly options: ReceiverOptions,
  ) {
    this.timing = { ...LIVE_TIMING_DEFAULT, ...options.timing };
    this.enabledFlag = options.enabled;
    this.bug = options.buggify ?? BUGGIFY_OFF;
    this.repeats = new RepeatLimiter(() => drivers.clock.nowMs());
  }

  async start(): Promise<void> {
    this.appliedTxn = this.applier.position().txn;
    // Opening made the store durable (FsEngine.open syncs after an unclean shutdown).
    this.durableTxn = this.applier.durablePosition().txn;
    // The slave commits when its master says, not on its own timer.
    this.releaseHold = this.engine.holdCommits();
    this.listener = await this.drivers.net.listen(this.options.host, this.options.port, (conn) => this.accept(conn));
    this.drivers.logger.log(1, `replication: slave listening on ${this.options.host}:${this.listener.port}${this.options.secret ? '' : ' (no REPLICATION_SECRET: any master is accepted, the link is unauthenticated)'}`);
  }

  get port(): number | undefined {
    return this.listener?.port;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of [...this.pending, ...(this.active ? [this.active] : [])]) this.close(s, 'slave stopping');
    await this.listener?.close();
    // A drop of uncommitted transactions under way ends before the engine's last commit.
    await this.stall?.settled;
    this.releaseHold?.();
  }

  get enabled(): boolean {
    return this.enabledFlag;
  }

  setEnabled(on: boolean): void {
    if (on === this.enabledFlag) return;
    this.enabledFlag = on;
    this.drivers.logger.log(1, on ? 'replication enabled: accepting the master' : 'replication disabled: the master is refused until enabled');
    if (!on) {
      for (const s of [...this.pending]) this.close(s, 'replication disabled on the slave');
      if (this.active) this.close(this.active, 'replication disabled on the slave');
    }
  }

  get connected(): boolean {
    return this.active !== undefined;
  }

  get masterAddress(): string | undefined {
    return this.active?.conn.remote;
  }

  /** Remember and log an error; with `kind`, at most one line of that kind a minute; with null, no line (one was logged before). */
  private note(message: string, kind?: string | null): void {
    this.lastError = message;
    if (kind === null) return;
    const line = kind === undefined ? message : this.repeats.pass(kind, message);
    if (line !== undefined) this.drivers.logger.log(0, `replication: ${line}`);
  }

  /** The slave takes nothing more until it is remounted (halt: its engine stopped, or dropping what was not durable failed). */
  get remountNeeded(): boolean {
    return this.halted !== undefined;
  }

  /** What stops the stream (a full disk, an I/O error, a stopped engine), or undefined. */
  get stalledBy(): string | undefined {
    if (this.halted !== undefined) return this.halted;
    const stall = this.stall;
    if (stall?.kind !== 'io' || stall.resumeAtMs === undefined) return stall?.reason;
    const now = this.drivers.clock.nowMs();
    const over = this.ioFailures > 1 ? ` over ${Math.round((now - this.ioSinceMs) / 60_000)} min` : '';
    return `${stall.reason}: the stream is taken again in ${Math.max(0, Math.ceil((stall.resumeAtMs - now) / 1000))} s (${this.ioFailures} attempt${this.ioFailures > 1 ? 's' : ''} failed${over})`;
  }

  private accept(conn: Connection): void {
    if (this.stopped) {
      conn.destroy();
      return;
    }
    this.stats.connections++;
    if (this.pending.size >= PENDING_CONNECTIONS_MAX) {
      this.stats.refused++;
      this.note(`refusing a connection from ${conn.remote}: ${PENDING_CONNECTIONS_MAX} connections are already in their handshake`);
      conn.destroy();
      return;
    }
    const s: Session = {
      conn,
      in: new WireIn(this.drivers.primitives),
      out: new WireOut(this.drivers.primitives),
      closed: false,
      handshaking: true,
      nonceS: this.drivers.rng.bytes(NONCE_BYTES),
      nonceM: undefined,
      masterFsId: '',
      acceptedMs: this.drivers.clock.nowMs(),
      lastHeardMs: this.drivers.clock.nowMs(),
      lastAckMs: this.drivers.clock.nowMs(),
      timer: undefined,
      assembler: undefined,
      epoch: 0,
      sinceAckBytes: 0,
      pendingBytes: 0,
      ackAfterWrites: false,
    };
    this.pending.add(s);
    conn.onClose((err) => this.closed(s, err));
    // WireIn.push copies each chunk: the driver may reuse its read buffer.
    conn.onData((chunk) => this.onData(s, chunk), { borrow: true });
    this.armTimer(s);
  }

  private armTimer(s: Session): void {
    s.timer = this.drivers.clock.setTimer(this.timing.heartbeatMs, () => {
      if (s.closed) return;
      const limit = s.handshaking ? this.timing.handshakeTimeoutMs : this.timing.peerTimeoutMs;
      // A handshake is timed from the accept: a peer trickling bytes cannot hold a slot.
      const quiet = this.drivers.clock.nowMs() - (s.handshaking ? s.acceptedMs : s.lastHeardMs);
      if (quiet > limit) {
        this.refuse(s, `nothing heard from ${s.conn.remote} for ${quiet} ms${s.handshaking ? ' (no handshake)' : ''}: closing the connection`);
        return;
      }
      this.armTimer(s);
    });
  }

  private closed(s: Session, err?: Error): void {
    if (s.closed) return;
    s.closed = true;
    s.timer?.cancel();
    this.handoffs.delete(s);
    if (this.pending.delete(s) && !this.stopped) {
      this.drivers.logger.log(1, `replication: ${s.conn.remote} closed the connection during its handshake${err ? ` (${err.message})` : ''}${s.nonceM ? ' (after this slave\'s proof: does the master have the same REPLICATION_SECRET?)' : ''}`);
    }
    if (this.active === s) {
      this.active = undefined;
      // The transaction it was sending will come again, from its start.
      this.engine.dropStagedBlocks();
      this.drivers.logger.log(1, `replication: master ${s.conn.remote} disconnected${err ? ` (${err.message})` : ''}; applied txn ${this.appliedTxn}`);
    }
  }

  private close(s: Session, why: string): void {
    if (s.closed) return;
    this.drivers.logger.log(2, `replication: closing the connection from ${s.conn.remote} (${why})`);
    s.conn.end();
    s.conn.destroy();
    this.closed(s);
  }

  /** Log, tell the peer (when it got as far as a HELLO), close. The slave carries on. */
  private refuse(s: Session, message: string, reply = false, kind?: string | null): void {
    this.stats.refused++;
    this.note(message, kind);
    if (reply && !s.closed) {
      // Closed by this slave, not by the master during its handshake (closed() logs that).
      this.pending.delete(s);
      this.closed(s);
      // Like an accepting one, a refusing HELLO goes out only once the commits in
      // progress ended: a master waiting for one may commit when it has the answer.
      const answer = s.out.frame(FRAME_TYPE.HELLO, 0, encodeHello({ stage: 2, version: 1, refused: true, message, durableTxn: 0, appliedTxn: 0, fsId: '', nonce: new Uint8Array(0), proof: new Uint8Array(0) }));
      void (this.commitLoop ?? Promise.resolve()).then(() => {
        s.conn.write(answer);
        s.conn.end();
      });
      return;
    }
    this.close(s, message);
  }

  private onData(s: Session, chunk: Uint8Array): void {
    if (s.closed) return;
    try {
      s.in.push(chunk);
    } catch (err) {
      this.refuse(s, `from ${s.conn.remote}: ${(err as Error).message}`);
      return;
    }
    for (;;) {
      let f: Frame | undefined;
      try {
        // Its payload is valid until the next push: everything below is synchronous.
        f = s.in.nextBorrowed();
      } catch (err) {
        if (s.handshaking || !(err instanceof ReplogError)) {
          this.refuse(s, `refusing ${s.conn.remote}: ${(err as Error).message} (not a lessfs master speaking protocol 1?)`);
          return;
        }
        this.nak(s, err.message);
        continue;
      }
      if (!f || s.closed) return;
      // Only whole, valid frames count as hearing from the master.
      s.lastHeardMs = this.drivers.clock.nowMs();
      try {
        if (s.handshaking) this.onHandshake(s, f);
        else this.onFrame(s, f);
      } catch (err) {
        if (s.handshaking) {
          this.refuse(s, `refusing ${s.conn.remote}: ${(err as Error).message}`, true);
          return;
        }
        if (err instanceof ReplogError) {
          this.nak(s, err.message);
          continue;
        }
        if (this.engine.stopped) {
          this.halt();
          return;
        }
        // The slave's state does not fit the master's transaction: stop taking it.
        this.note(`${(err as Error).message}; closing the connection from the master`);
        this.close(s, 'apply failed');
        return;
      }
      if (s.closed) return;
    }
  }

  /**
   * Frames come with payloads borrowed from the receive buffer (no copy per
   * frame); what a transaction keeps until it is applied is copied here. A
   * block's bytes are copied into one of the engine's recycled block buffers
   * and handed to the engine at once (stageReplicatedBlock), which writes them
   * to the data file while the rest of the transaction arrives: only the
   * records wait for the COMMIT. Fresh buffers per frame cost more than the
   * copy (page faults, garbage collection). A new assembler (a handshake, a
   * NAK) starts a new transaction: what the last one staged is freed.
   */
  private assembler(): TransactionAssembler {
    const buffers = this.engine.buffers;
    this.engine.dropStagedBlocks();
    return new TransactionAssembler(this.drivers.primitives, this.appliedTxn + 1, {
      blockSizeBytes: this.options.blockSizeBytes,
      ownRecord: (r) => {
        if (r.type === FRAME_TYPE.KV) return { type: r.type, kv: { table: r.kv.table, key: r.kv.key.slice(), value: r.kv.value?.slice() } };
        // Never a BLOCKREF: without allowBlockRefs the assembler refuses it before this.
        if (r.type !== FRAME_TYPE.BLOCK) throw new ReplogError('EFRAME', `record type ${r.type} is not allowed on the wire`);
        const b = r.block;
        const key = b.key.slice();
        let stored: Uint8Array;
        if (b.stored.length <= buffers.blockSizeBytes) {
          stored = buffers.take().subarray(0, b.stored.length);
          stored.set(b.stored);
        } else {
          stored = b.stored.slice();
        }
        if (!this.engine.stageReplicatedBlock(key, b.rawLength, stored)) buffers.give(stored);
        return { type: FRAME_TYPE.BLOCK, block: { key, codec: b.codec, rawLength: b.rawLength, stored: STAGED } };
      },
    });
  }

  /** Refuse what came since the last whole transaction; the master resends it after a RESYNC marker. */
  private nak(s: Session, why: string): void {
    this.stats.naksSent++;
    this.drivers.logger.log(1, `replication: refusing a frame from the master (${why}); asking for txn ${this.appliedTxn + 1} again`);
    s.epoch++;
    s.in.resync(s.epoch);
    s.assembler = this.assembler();
    s.pendingBytes = 0;
    s.conn.write(s.out.frame(FRAME_TYPE.NAK, this.appliedTxn + 1, encodeText(why)));
  }

  private onHandshake(s: Session, f: Frame): void {
    if (f.type !== FRAME_TYPE.HELLO) throw new ReplogError('EFRAME', `expected HELLO, got frame type ${f.type}`);
    const h = decodeHello(f.payload);
    const secret = this.options.secret;
    if (s.nonceM === undefined) {
      if (h.stage !== 1) throw new ReplogError('EFRAME', `expected HELLO stage 1, got stage ${h.stage}`);
      if (!this.enabledFlag) throw new ReplogError('EFORMAT', 'replication is disabled on this slave (echo 1 > /.lessfs/replication/enabled)');
      if (h.blockSizeBytes !== this.options.blockSizeBytes) {
        throw new ReplogError('EBLKSIZE', `the master has BLKSIZE ${h.blockSizeBytes}, this slave ${this.options.blockSizeBytes}`);
      }
      const pos = this.applier.position();
      if (pos.fsId !== undefined && pos.fsId !== h.fsId) {
        throw new ReplogError('EFSID', `master filesystem ${h.fsId} is not this slave's master (${pos.fsId}): split-brain guard`);
      }
      if (secret && !h.auth) throw new ReplogError('EFORMAT', 'this slave requires REPLICATION_SECRET and the master offers none');
      if (!secret && h.auth) throw new ReplogError('EFORMAT', 'the master offers REPLICATION_SECRET authentication but this slave has no REPLICATION_SECRET');
      s.nonceM = h.nonce;
      s.masterFsId = h.fsId;
      // A master reconnecting: commit requests still in flight on its old
      // connection are not obeyed any more (the new one decides when to commit).
      this.handoffs.add(s);
      // A commit the previous master asked for ends first: the new master's
      // commits must not overlap it, and it decides what is durable.
      void (this.commitLoop ?? Promise.resolve())
        .then(() => this.roomToResume())
        .then(
          (refusal) => {
            if (s.closed) return;
            if (refusal === undefined) this.sendHello2(s, h.nonce, pos.fsId);
            // The same words every time (no address): the master logs a refusal once, shows it in its status.
            // A halted slave, or one waiting after an I/O error, said why once when it stopped: its refusals are not logged.
            else this.refuse(s, refusal, true, this.halted === refusal || this.stall?.kind === 'io' ? null : 'refused: disk');
          },
          (err: unknown) => this.refuse(s, `refusing master ${s.conn.remote}: checking the disks for room failed: ${(err as Error).message}`, true, 'refused: disk check'),
        );
      return;
    }
    if (h.stage !== 3) throw new ReplogError('EFRAME', `expected HELLO stage 3, got stage ${h.stage}`);
    if (!this.enabledFlag) throw new ReplogError('EFORMAT', 'replication is disabled on this slave (echo 1 > /.lessfs/replication/enabled)');
    // Its stage 2 went out before the disk filled or failed: no stream until the slave may take it again.
    if (this.halted !== undefined) throw new FsError('EIO', this.halted);
    if (this.stall) throw new FsError(this.stall.kind === 'space' ? 'ENOSPC' : 'EIO', this.stall.refusal);
    if (secret) {
      if (!proofsEqual(h.proof, masterProof(this.drivers.primitives, secret, s.nonceM, s.nonceS))) {
        throw new ReplogError('ECRC', 'the master\'s proof of REPLICATION_SECRET is wrong');
      }
      const key = sessionKey(this.drivers.primitives, secret, s.nonceM, s.nonceS);
      s.in.macKey = key;
      s.out.macKey = key;
    }
    s.handshaking = false;
    this.pending.delete(s);
    this.handoffs.delete(s);
    // Commit request ids are the master's, per connection (a restarted master
    // counts from 1 again). No commit runs now: HELLO was answered after them.
    this.wantCommitId = 0;
    this.doneCommitId = 0;
    if (this.active) this.close(this.active, `replaced by a new connection from ${s.conn.remote}`);
    this.active = s;
    s.assembler = this.assembler();
    this.drivers.logger.log(1, `replication: master ${s.masterFsId} connected from ${s.conn.remote} (${secret ? 'authenticated' : 'unauthenticated: no REPLICATION_SECRET'}); slave at txn ${this.appliedTxn}`);
    this.ack(s, false);
  }

  private sendHello2(s: Session, nonceM: Uint8Array, adoptedFsId: string | undefined): void {
    const secret = this.options.secret;
    s.conn.write(
      s.out.frame(FRAME_TYPE.HELLO, 0, encodeHello({
        stage: 2,
        version: 1,
        refused: false,
        message: '',
        durableTxn: this.durableTxn,
        appliedTxn: this.appliedTxn,
        fsId: adoptedFsId ?? '',
        nonce: s.nonceS,
        proof: secret ? slaveProof(this.drivers.primitives, secret, nonceM, s.nonceS) : new Uint8Array(0),
      })),
    );
  }

  private ack(s: Session, committed: boolean): void {
    if (this.bug.fires('ack-late')) {
      s.sinceAckBytes = 0;
      s.lastAckMs = this.drivers.clock.nowMs();
      buggifyDelay(this.bug, 'ack-late', this.drivers.clock, 3000)
        .then(() => this.ackNow(s, committed))
        .catch((err: unknown) => this.note(`late acknowledgement failed: ${(err as Error).message}`));
      return;
    }
    this.ackNow(s, committed);
  }

  /**
   * An ACK of progress (it moves the master's send window), held back while
   * the engine's data writes are backed up: a slave whose disk is slower than
   * its link then has the master wait instead of queueing the difference in
   * memory (fresh buffers, page faults, garbage collection).
   */
  private progressAck(s: Session): void {
    if (!this.engine.dataWritesBacklogged) {
      this.ack(s, false);
      return;
    }
    if (s.ackAfterWrites) return;
    s.ackAfterWrites = true;
    this.engine.dataWritesRoom().then(
      () => {
        s.ackAfterWrites = false;
        if (!s.closed) this.ack(s, false);
      },
      (err: unknown) => this.note(`waiting for data writes failed: ${(err as Error).message}`),
    );
  }

  private ackNow(s: Session, committed: boolean): void {
    s.sinceAckBytes = 0;
    s.lastAckMs = this.drivers.clock.nowMs();
    if (!s.closed) {
      s.conn.write(s.out.frame(FRAME_TYPE.ACK, this.durableTxn, encodeAck({ appliedTxn: this.appliedTxn, committed, pendingBytes: s.pendingBytes, commitId: this.doneCommitId })));
    }
  }

  private onFrame(s: Session, f: Frame): void {
    // A failed data sync in the background (FsEngine.presyncData) stopped the engine.
    if (this.engine.stopped) {
      this.halt();
      return;
    }
    const writeError = this.engine.replicaWriteError;
    if (writeError !== undefined) {
      this.stopFor(writeError);
      return;
    }
    switch (f.type) {
      case FRAME_TYPE.KV:
      case FRAME_TYPE.BLOCK:
      case FRAME_TYPE.COMMIT: {
        const tx = (s.assembler as TransactionAssembler).accept(f);
        s.sinceAckBytes += f.sizeBytes;
        if (!tx) {
          s.pendingBytes += f.sizeBytes;
          // Progress inside a large transaction moves the master's window, and
          // tells it (on a slow link) that the slave is alive.
          if (s.sinceAckBytes >= PROGRESS_ACK_BYTES || this.drivers.clock.nowMs() - s.lastAckMs >= this.timing.heartbeatMs) this.progressAck(s);
          return;
        }
        s.pendingBytes = 0;
        const pos = this.applier.position();
        const meta: SlaveReplicationMeta = { ...pos, fsId: s.masterFsId, txn: tx.txn };
        this.engine.applyReplicated(toReplicatedTxn(tx, true), meta);
        if (pos.fsId === undefined) this.drivers.logger.log(1, `slave adopted master filesystem id ${s.masterFsId}`);
        this.appliedTxn = tx.txn;
        this.stats.transactions++;
        if (s.sinceAckBytes >= PROGRESS_ACK_BYTES || s.in.buffered === 0) this.progressAck(s);
        if (this.bug.fires('slave-drop')) this.close(s, `buggify: dropped right after applying txn ${tx.txn}`);
        return;
      }
      case FRAME_TYPE.COMMIT_NOW: {
        const id = decodeCommitNow(f.payload);
        if (this.handoffs.size > 0) {
          this.drivers.logger.log(2, `replication: ignoring commit request ${id} from ${s.conn.remote}: another connection is in its handshake`);
          return;
        }
        this.wantCommitId = Math.max(this.wantCommitId, id);
        this.runCommits();
        return;
      }
      case FRAME_TYPE.HEARTBEAT:
        this.lastHeartbeatMasterMs = decodeHeartbeat(f.payload);
        this.ack(s, false);
        return;
      default:
        throw new ReplogError('EFRAME', `frame type ${f.type} is not expected from a master`);
    }
  }

  /** A data write or a commit of the master's transactions failed: stop the stream the way the error asks for. */
  private stopFor(err: unknown): void {
    if (this.engine.stopped) this.halt();
    else if ((err as { code?: unknown }).code === 'ENOSPC') this.stopForSpace(err);
    else this.stopForIo(err);
  }

  /**
   * A data write or a commit of the master's transactions failed for want of
   * space. Retrying them in place would wait for room for all of their
   * blocks past the floor kept for the metadata store, which freeing some
   * space need not give, while the master keeps them anyway (it forgets only
   * what this slave acknowledged as durable). So, as a restart would: stop
   * taking the stream (close the master's connection), drop the
   * transactions not yet durable (FsEngine.discardUncommitted, after the
   * commit running, if any), and refuse the master with the reason until a
   * disk has RESUME_ROOM_BYTES (room-wait.ts) more free than after the drop; then take the
   * stream again from the durable txn. Nothing is acknowledged that is not
   * durable: ACKs carry the durable txn only.
   */
  private stopForSpace(cause: unknown): void {
    if (this.stall) return;
    this.stats.stalls++;
    const reason = `the disk under ${this.engine.fullDiskPath ?? this.engine.options.blockDataPath} is full (${(cause as Error).message})`;
    const stall = this.stopStream('space', reason, `on this slave ${reason}; it dropped the transactions after txn ${this.durableTxn} it had not made durable and takes them again when room appears`);
    this.dropUncommitted(stall, async (dropped) => {
      const wait = await RoomWait.afterDrop(this.engine);
      stall.wait = wait;
      stall.refusal = `on this slave ${reason}; it dropped the transactions after txn ${this.durableTxn} it had not made durable and takes them again once ${wait.wanted(false)}`;
      this.note(`${reason}: stopped taking the master's transactions; dropped ${dropped} (not durable: the master sends them again); resuming from txn ${this.durableTxn + 1} once ${wait.wanted(true)}`, 'stopped: disk full');
    });
  }

  /**
   * A data write or a commit of the master's transactions failed with an I/O
   * error of this slave's disks (not ENOSPC; the engine still runs). Retrying
   * in place would hold the transactions in memory while the master sends
   * more, and a write that keeps failing holds the stream for good. So, as
   * for a full disk: stop taking the stream, drop what is not durable, and
   * refuse the master until a wait that doubles with each failure in a row
   * (ioRetryWaitMs, room-wait.ts) has passed; then take the stream again
   * from the durable txn. A commit that succeeds ends the run of failures.
   */
  private stopForIo(cause: unknown): void {
    if (this.stall) return;
    this.stats.ioErrors++;
    const now = this.drivers.clock.nowMs();
    if (this.ioFailures === 0) this.ioSinceMs = now;
    this.ioFailures++;
    const failures = this.ioFailures;
    const waitMs = ioRetryWaitMs(failures);
    const error = `(${(cause as Error).message})`;
    const reason = `an I/O error of this slave's disks ${error}`;
    const stall = this.stopStream('io', reason, `on this slave an I/O error of its disks ${error} failed the master's transactions; it drops the transactions after txn ${this.durableTxn} it had not made durable`);
    this.dropUncommitted(stall, async (dropped) => {
      stall.resumeAtMs = this.drivers.clock.nowMs() + waitMs;
      stall.refusal = `on this slave an I/O error of its disks ${error} failed the master's transactions; it dropped the transactions after txn ${this.durableTxn} it had not made durable and takes them again in ${waitMs / 1000} s (attempt ${failures}, the wait doubling up to ${IO_RETRY_MAX_MS / 1000} s)`;
      const since = failures > 1 ? ` (${failures} attempts failed in ${Math.round((this.drivers.clock.nowMs() - this.ioSinceMs) / 1000)} s)` : '';
      this.note(`${reason}: stopped taking the master's transactions; dropped ${dropped} (not durable: the master sends them again); resuming from txn ${this.durableTxn + 1} in ${waitMs / 1000} s${since}, the wait doubling up to ${IO_RETRY_MAX_MS / 1000} s`, 'stopped: I/O error');
    });
  }

  /** Stop taking the stream: the master's connection closes, its HELLOs are refused while the stall lasts. */
  private stopStream(kind: Stall['kind'], reason: string, refusal: string): Stall {
    const stall: Stall = { kind, reason, settled: Promise.resolve(), wait: undefined, resumeAtMs: undefined, refusal };
    this.stall = stall;
    if (this.active) this.close(this.active, reason);
    return stall;
  }

  /**
   * Drop the transactions not yet durable (after the commit running: what it
   * makes durable stays), then `then` with what was dropped, in words. A
   * drop that fails leaves the cache as it was: no stream until a remount.
   */
  private dropUncommitted(stall: Stall, then: (dropped: string) => Promise<void>): void {
    const applied = this.appliedTxn;
    this.drops++;
    stall.settled = (async () => {
      // A commit running (the master's request) ends first: what it makes durable stays.
      await (this.commitLoop ?? Promise.resolve());
      await this.engine.discardUncommitted();
      this.appliedTxn = this.applier.position().txn;
      // A commit may have made more durable than its request covered: that is durable too.
      assert(this.appliedTxn >= this.durableTxn && this.appliedTxn === this.applier.durablePosition().txn, `after dropping uncommitted transactions the slave is at txn ${this.appliedTxn}, durable ${this.durableTxn}`);
      this.durableTxn = this.appliedTxn;
      const first = this.durableTxn + 1;
      const txns = applied === first ? `txn ${applied}` : `txns ${first}..${applied}`;
      await then(applied >= first ? `${txns} and what had arrived of the next` : 'what had arrived of the next transaction');
    })().catch((err: unknown) => {
      // The cache could not be put back to the durable state: no stream until a remount does it.
      stall.wait = undefined;
      this.halt(`${stall.reason}, and dropping the transactions it had not made durable failed (${(err as Error).message})`);
    }).finally(() => {
      this.drops--;
    });
  }

  private drops = 0;

  /** Dropping the transactions not yet durable (after a full disk or an I/O error): the tree is on its way back to the durable txn. */
  get dropping(): boolean {
    return this.drops > 0;
  }

  /**
   * This slave can take no more transactions until it is remounted: its
   * engine stopped (a failed fsync of the data file: the kernel may have
   * dropped pages a later fsync would not report, so nothing may commit
   * after it), or a drop of what was not durable failed. Said once in the
   * log; the status and every refused HELLO say it (not logged again).
   */
  private halt(why?: string): void {
    if (this.halted !== undefined) return;
    const what = why ?? `fsync of the block data file failed (${(this.engine.stoppedBy as Error | undefined)?.message})`;
    this.halted = `remount this slave: ${what}; it takes no more of its master's transactions until it is remounted (it then starts from its durable txn ${this.durableTxn})`;
    if (this.active) this.close(this.active, 'the slave must be remounted');
    this.note(this.halted);
  }

  /**
   * Before a master's HELLO is answered: undefined when the stream may go
   * on, else why not (the disk is still full). A slave that stopped for a
   * full disk takes the stream again once the engine no longer finds it full
   * or a disk has RESUME_ROOM_BYTES more free than after the drop.
   */
  private async roomToResume(): Promise<string | undefined> {
    if (this.halted !== undefined) return this.halted;
    const stall = this.stall;
    if (!stall) return undefined;
    await stall.settled;
    if (this.halted !== undefined) return this.halted;
    if (stall.kind === 'io') {
      if (stall.resumeAtMs === undefined || this.drivers.clock.nowMs() < stall.resumeAtMs) return stall.refusal;
      if (this.stall === stall) {
        this.stall = undefined;
        const line = this.repeats.pass('resumed: I/O error', `replication: taking the master's transactions again from txn ${this.appliedTxn + 1} after ${this.ioFailures} I/O error${this.ioFailures > 1 ? 's' : ''} of this slave's disks in a row`);
        if (line !== undefined) this.drivers.logger.log(0, line);
      }
      return undefined;
    }
    if (stall.wait === undefined) return stall.refusal;
    const { enough, text } = await stall.wait.check();
    if (this.stall !== stall) return undefined;
    if (!enough) return stall.refusal;
    this.stall = undefined;
    this.drivers.logger.log(0, `replication: the disk has room again (${text}): taking the master's transactions again from txn ${this.appliedTxn + 1}`);
    return undefined;
  }

  /**
   * Commit until every COMMIT_NOW asked for is answered; each answer is an ACK
   * naming the request and the txn its commit made durable.
   */
  private runCommits(): void {
    if (this.commitLoop) return;
    this.commitLoop = (async () => {
      while (this.wantCommitId > this.doneCommitId) {
        if (this.bug.fires('slave-commit-late')) await buggifyDelay(this.bug, 'slave-commit-late', this.drivers.clock, 3000);
        // The connection that asked is gone (its master stopped waiting and
        // dropped it, or the link failed): that master may be committing now.
        // A new connection cannot be active yet (its HELLO waits for this loop); it asks again.
        if (!this.active) {
          this.drivers.logger.log(1, `replication: not starting commit request ${this.wantCommitId}: the connection that asked for it is closed`);
          break;
        }
        const id = this.wantCommitId;
        // Applying is synchronous and a commit freezes the cache at once: it covers this txn.
        const covered = this.appliedTxn;
        this.servingCommitId = id;
        try {
          await this.engine.commit('master');
        } catch (err) {
          // The commit failed: what it covered is not durable. Its error stops the stream.
          this.stopFor(err);
          return;
        } finally {
          this.servingCommitId = undefined;
        }
        this.durableTxn = Math.max(this.durableTxn, covered);
        if (this.ioFailures > 0) {
          this.drivers.logger.log(0, `replication: txn ${this.durableTxn} is durable: this slave's disks work again after ${this.ioFailures} I/O error${this.ioFailures > 1 ? 's' : ''} in a row`);
          this.ioFailures = 0;
        }
        this.doneCommitId = id;
        this.stats.commits++;
        if (this.active) this.ack(this.active, true);
      }
    })().finally(() => {
      this.commitLoop = undefined;
    });
  }
}
