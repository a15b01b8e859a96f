// The oracle of the master's side of a run (live or batch): a seeded
// workload on the master, mirrored in a ModelFs, and for every master txn the
// trees its commit may hold (a commit freezes the cache between two
// operations, so the tree before or after the operation it overlaps). A
// master that fails must come back at a txn it committed, not before its last
// fsync or commit, holding one of that txn's trees; the model then continues
// from that tree. Checks record problems instead of throwing, so a test
// reports every violation of a run at once.

import { FsError } from '../core/errors.ts';
import type { FsEngine } from '../core/fs/engine.ts';
import { PathFs } from '../core/fs/path-fs.ts';
import type { MasterLog } from '../core/replication/master-log.ts';
import { ModelFs } from './model.ts';
import type { SimMachine } from './node-env.ts';
import { mayFailWithEio, mayRefuseForRoom } from './schedule.ts';
import type { Scheduler } from './scheduler.ts';
import { TreeHistory } from './tree-history.ts';
import { applyToFs, applyToModel, fsListingText, modelListingText, sameResult, type Op, type OpResult } from './workload.ts';

/** What the oracle needs of a cluster's master node (LiveCluster's and BatchCluster's nodes). */
export interface OracleNode {
  engine: FsEngine | undefined;
  node: { readonly masterLog: MasterLog | undefined } | undefined;
  machine: SimMachine;
}

/** What the oracle needs of a cluster (LiveCluster, BatchCluster). */
export interface MasterHost {
  readonly scheduler: Scheduler;
  readonly master: OracleNode;
  run<T>(p: Promise<T>): Promise<T>;
  engineOf(n: OracleNode): FsEngine;
  digest(n: OracleNode): Promise<string>;
}

interface PendingOp {
  op: Op;
  engine: FsEngine;
  settled: boolean;
  failure: unknown;
  result: OpResult;
}

export class MasterOracle {
  model = new ModelFs();
  /** Master txn -> digests of the trees its commit may hold. */
  readonly atTxn = new Map<number, Set<string>>();
  /** Model trees by digest, to continue from the one a recovered master holds. */
  private readonly trees: TreeHistory;
  protected digestNow: string;
  /** engine.txn of the master at the last operation boundary. */
  private txnSeen = 0;
  /** The master's last durable txn when the last fsync or commit returned: must survive a crash. */
  syncedTxn = 0;
  /** The highest txn the master reported committed (durable). */
  masterDurableTxn = 0;
  /** The lowest txn the master froze again since the oracle last looked (engine.txnRefrozen). */
  private refrozenFrom: number | undefined;
  /** The operation in flight when the master failed (its result may or may not be committed). */
  private inflight: Op | undefined;
  /** That operation's promise state, while it is in flight. */
  private pending: PendingOp | undefined;
  readonly problems: string[] = [];
  opsRun = 0;
  /** Operations the master refused with ENOSPC on a full disk. */
  refusedOps = 0;
  /** Operations (fsync, commit) that failed with an injected I/O error of the master's disk. */
  failedOps = 0;

  constructor(
    private readonly host: MasterHost,
    protected readonly blockSizeBytes: number,
  ) {
    this.digestNow = this.model.digest();
    this.trees = new TreeHistory(this.model, blockSizeBytes);
    this.atTxn.set(0, new Set([this.digestNow]));
  }

  protected problem(message: string): void {
    this.problems.push(`${this.host.scheduler.nowMs()} ms: ${message}`);
  }

  /** A problem the caller found (a batch run's checks), in time order with the oracle's own. */
  report(message: string): void {
    this.problem(message);
  }

  /** A node's tree as text, for a problem report (read after the check: an applying slave may have moved on). */
  protected async listing(engine: FsEngine | undefined, name: string): Promise<string> {
    if (!engine) return `(${name} is down)`;
    try {
      return await this.host.run(fsListingText(new PathFs(engine)));
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
      return `(the ${name}'s tree changed while it was listed: ${err.code} ${err.message})`;
    }
  }

  private note(fromTxn: number, toTxn: number, digests: string[]): void {
    for (let t = fromTxn + 1; t <= toTxn; t++) {
      const set = this.atTxn.get(t) ?? new Set<string>();
      for (const d of digests) set.add(d);
      this.atTxn.set(t, set);
    }
  }

  private observeMaster(): void {
    const log = this.host.master.node?.masterLog;
    if (log) this.masterDurableTxn = Math.max(this.masterDurableTxn, log.committedTxn);
  }

  /**
   * Txns the master froze again since the oracle last looked (a full disk
   * failed their data writes) hold none of the trees noted for them: they
   * now hold a tree of the window since then, noted next as for a new txn.
   */
  private forgetRefrozen(): void {
    const from = this.refrozenFrom;
    if (from === undefined) return;
    this.refrozenFrom = undefined;
    for (const t of [...this.atTxn.keys()]) if (t >= from) this.atTxn.delete(t);
    this.txnSeen = Math.min(this.txnSeen, from - 1);
  }

  /** Commits since the last boundary while no operation ran hold the tree of that boundary. */
  protected catchUp(): void {
    const e = this.host.master.engine;
    if (!e) return;
    this.forgetRefrozen();
    this.note(this.txnSeen, e.txn, [this.digestNow]);
    this.txnSeen = Math.max(this.txnSeen, e.txn);
    this.observeMaster();
  }

  /**
   * The master opened (first time or after a failure): its tree is the one of
   * a txn it had committed, at or after the last fsync, and the mount commit holds it.
   */
  async masterOpened(): Promise<void> {
    const e = this.host.engineOf(this.host.master);
    e.txnRefrozen = (txn) => {
      this.refrozenFrom = Math.min(this.refrozenFrom ?? txn, txn);
    };
    const got = await this.host.digest(this.host.master);
    const mountTxn = e.lastCommit?.txn ?? e.txn;
    const recovered = mountTxn - 1;
    if (recovered < this.syncedTxn) this.problem(`master recovered at txn ${recovered}, before txn ${this.syncedTxn} that an fsync or commit made durable`);
    const want = this.atTxn.get(recovered);
    if (!want || !want.has(got)) {
      this.problem(`master recovered at txn ${recovered} with a tree that is none of the ${want?.size ?? 0} trees that txn may hold:\n${await this.listing(this.host.master.engine, 'master')}`);
    }
    for (const t of [...this.atTxn.keys()]) if (t > recovered) this.atTxn.delete(t);
    this.atTxn.set(mountTxn, new Set([got]));
    const tree = this.trees.tree(got);
    if (tree) this.model = tree;
    this.trees.restart(this.model);
    this.digestNow = got;
    this.txnSeen = e.txn;
    this.inflight = undefined;
    this.pending = undefined;
    this.refrozenFrom = undefined;
    this.observeMaster();
  }

  /** Before the master fails: what it froze so far holds the last tree, or the one of the operation in flight. */
  beforeMasterFails(): void {
    const e = this.host.master.engine;
    if (!e) return;
    this.forgetRefrozen();
    const ds = [this.digestNow];
    if (this.inflight) {
      const m = this.model.clone();
      applyToModel(m, this.inflight, this.blockSizeBytes);
      this.trees.keep(m);
      ds.push(m.digest());
    }
    this.note(this.txnSeen, e.txn, ds);
    this.txnSeen = e.txn;
    this.observeMaster();
  }

  /**
   * Run one operation on the master. `stop` ends the run early (a fault is
   * due): 'stopped' leaves the operation in flight (a slave-only fault lets
   * it finish, see fault()). An operation still pending after maxMs is
   * 'stuck' (a writer the backlog throttle holds).
   */
  async runOp(op: Op, stop?: () => boolean, maxMs = 600_000): Promise<'done' | 'stopped' | 'stuck'> {
    const e = this.host.engineOf(this.host.master);
    if (this.pending) throw new Error('runOp while an operation is still in flight');
    const fs = new PathFs(e);
    this.catchUp();
    const pending: PendingOp = { op, engine: e, settled: false, failure: undefined, result: { ok: '' } };
    const p = op.op === 'commit' ? e.commit().then((): OpResult => ({ ok: '' })) : applyToFs(fs, op, this.blockSizeBytes);
    p.then(
      (r) => {
        pending.settled = true;
        pending.result = r;
      },
      (err: unknown) => {
        pending.settled = true;
        pending.failure = err;
      },
    );
    this.pending = pending;
    this.inflight = op;
    return this.awaitPending(stop, maxMs);
  }

  private async awaitPending(stop?: () => boolean, maxMs = 600_000): Promise<'done' | 'stopped' | 'stuck'> {
    const pending = this.pending as PendingOp;
    const { op, engine: e } = pending;
    const sched = this.host.scheduler;
    await sched.run({ untilMs: sched.nowMs() + maxMs, done: () => pending.settled || (stop?.() ?? false) });
    if (!pending.settled) return stop?.() ? 'stopped' : 'stuck';
    this.pending = undefined;
    this.inflight = undefined;
    const failed = pending.failure === undefined ? undefined : this.refusal(op, e, pending.failure);
    if (pending.failure !== undefined && failed === undefined) throw pending.failure;
    const result: OpResult = failed === undefined ? pending.result : { err: failed };
    this.opsRun++;
    const refused = 'err' in result ? this.refusal(op, e, result) : undefined;
    if (refused !== undefined) {
      // Refused for want of room, or failed by an injected I/O error: it changed nothing (DESIGN §5), so the model skips it.
      if (refused === 'ENOSPC') this.refusedOps++;
      else this.failedOps++;
      this.forgetRefrozen();
      this.note(this.txnSeen, e.txn, [this.digestNow]);
      this.txnSeen = e.txn;
      this.observeMaster();
      return 'done';
    }
    const want = applyToModel(this.model, op, this.blockSizeBytes);
    if (!sameResult(want, result)) this.problem(`master op ${JSON.stringify(op)}: got ${JSON.stringify(result)}, the model says ${JSON.stringify(want)}`);
    if ((op.op === 'fsync' && 'ok' in result) || op.op === 'commit') this.syncedTxn = e.lastCommit?.txn ?? this.syncedTxn;
    this.trees.record(op, this.model);
    const d = this.model.digest();
    this.forgetRefrozen();
    this.note(this.txnSeen, e.txn, [this.digestNow, d]);
    this.txnSeen = e.txn;
    this.digestNow = d;
    this.observeMaster();
    return 'done';
  }

  /**
   * The error code, when the master answered the operation ENOSPC where it
   * may (mayRefuseForRoom) or EIO where it may (mayFailWithEio); undefined
   * for any other outcome, which the model judges.
   */
  private refusal(op: Op, e: FsEngine, outcome: unknown): 'ENOSPC' | 'EIO' | undefined {
    // A commit rejects with the error of what failed (a data write, the log append: FsError, DiskError).
    const code = outcome instanceof Error ? (outcome as { code?: unknown }).code : (outcome as { err?: unknown }).err;
    const disk = this.host.master.machine.disk;
    if (code === 'ENOSPC' && mayRefuseForRoom(op, e, disk)) return 'ENOSPC';
    if (code === 'EIO' && mayFailWithEio(op, e, disk)) return 'EIO';
    return undefined;
  }

  /** Finish the operation a stop left in flight on a master that is still up. */
  async finishInflight(): Promise<void> {
    if (!this.pending) return;
    if (this.host.master.engine !== this.pending.engine) {
      this.pending = undefined;
      return;
    }
    const outcome = await this.awaitPending();
    if (outcome !== 'done') throw new Error(`in-flight operation ${JSON.stringify(this.inflight)}: ${outcome}`);
  }

  /** Let virtual time pass with no operation running (commits then hold the current tree). */
  async idle(ms: number, stop?: () => boolean): Promise<void> {
    this.catchUp();
    const sched = this.host.scheduler;
    await sched.run({ untilMs: sched.nowMs() + ms, done: stop });
    this.catchUp();
  }

  /** The master's tree must be the model's (checked when no operation runs). */
  async checkMaster(): Promise<void> {
    if (!this.host.master.engine) return;
    const got = await this.host.digest(this.host.master);
    if (got !== this.digestNow) this.problem(`master tree differs from the model:\n${await this.listing(this.host.master.engine, 'master')}\nmodel:\n${modelListingText(this.model)}`);
  }

}
