// A live-replication cluster in simulation: a master streaming to a slave over
// a SimNetwork, both SimMachines on one scheduler, so partitions, resets, bit
// flips, crashes and power loss of either or both apply. It records every
// commit of both nodes and fails at once if a master commit and a
// master-ordered slave commit are ever in progress together (DESIGN §6).

import type { Connection, Net } from '../core/drivers.ts';
import { FsError } from '../core/errors.ts';
import { FsEngine } from '../core/fs/engine.ts';
import { fsck, type FsckReport } from '../core/fs/fsck.ts';
import { PathFs } from '../core/fs/path-fs.ts';
import type { EngineOptions } from '../core/fs/types.ts';
import { ReplicationNode, type ReplicationConfig } from '../core/replication/node.ts';
import type { LiveReceiver } from '../core/replication/receiver.ts';
import type { LiveSender, LiveTiming } from '../core/replication/sender.ts';
import { simEngineOptions } from './batch-cluster.ts';
import { nodeBuggify, type BuggifyChoice, type SimBuggify } from './buggify.ts';
import { MasterOracle } from './master-oracle.ts';
import type { ModelFs } from './model.ts';
import { SimNetwork, type SimNetOptions } from './net.ts';
import { SimMachine, type SimNodeOptions } from './node-env.ts';
import { SimRng } from './rng.ts';
import { applyLinkStep, CutPlanner } from './schedule.ts';
import type { Scheduler } from './scheduler.ts';
import { fsDigest, NAMES, POOL_PATTERNS, randomOp, type Op } from './workload.ts';

export const LIVE_PORT = 7101;

export interface LiveNode {
  name: 'master' | 'slave';
  machine: SimMachine;
  options: EngineOptions;
  repl: ReplicationConfig;
  engine: FsEngine | undefined;
  node: ReplicationNode | undefined;
  /** Commits in progress on this node (by reason). */
  committing: string | undefined;
  /** Its rare-path hooks, kept across incarnations (undefined: buggify off). */
  buggify: SimBuggify | undefined;
}

export interface LiveClusterOptions extends BuggifyChoice {
  engine?: Partial<EngineOptions>;
  net?: Partial<SimNetOptions>;
  masterNode?: Partial<SimNodeOptions>;
  slaveNode?: Partial<SimNodeOptions>;
  timing?: Partial<LiveTiming>;
  secret?: string;
  maxBacklogSizeBytes?: number;
  /** The master's catch-up commit bounds (LiveSender's catchUpCommitRecords, catchUpCommitBytes). */
  catchUpCommitRecords?: number;
  catchUpCommitBytes?: number;
}

/** Commits that are not ordered by the master's coordination (each node's own mount and unmount). */
const LOCAL_COMMITS = new Set(['mount', 'unmount']);

export class LiveCluster {
  readonly master: LiveNode;
  readonly slave: LiveNode;
  readonly network: SimNetwork;
  private readonly rng: SimRng;
  /** Violations of "never committing at the same instant". */
  readonly overlaps: string[] = [];
  /**
   * Overlaps of a slave commit whose request the master had stopped waiting
   * for (LiveTiming.slaveCommitWaitMs): the master then commits anyway, by
   * design (docs/replication-protocol.md); not violations.
   */
  readonly overlapsAfterWaitExpired: string[] = [];
  /** Transactions the slave applied out of order (not its position + 1): a double or skipped apply. */
  readonly applyViolations: string[] = [];
  commitsSeen = { master: 0, slave: 0 };

  constructor(
    readonly scheduler: Scheduler,
    readonly seed: number,
    private readonly opts: LiveClusterOptions = {},
  ) {
    this.rng = new SimRng(seed);
    this.network = new SimNetwork(scheduler, this.rng.split('net'), opts.net);
    const common = {
      replication: 'masterslave' as const,
      replicationBatchMode: false,
      replicationWatchdir: undefined,
      replicationEnabled: true,
      rotateReplogSizeBytes: 0,
      rotateReplogIntervalS: 0,
      replicationSecret: opts.secret,
      maxBacklogSizeBytes: opts.maxBacklogSizeBytes ?? 0,
    };
    const mOpts = simEngineOptions('/master', opts.engine);
    const sOpts = simEngineOptions('/slave', { ...opts.engine, replica: true });
    const mRng = this.rng.split('master');
    const sRng = this.rng.split('slave');
    this.master = {
      name: 'master',
      machine: new SimMachine(scheduler, mRng, { name: 'master', ...opts.masterNode }),
      options: mOpts,
      repl: { ...common, replicationRole: 'master', replicationPartnerIp: 'slave', replicationPartnerPort: LIVE_PORT, blockDataPath: mOpts.blockDataPath },
      engine: undefined,
      node: undefined,
      committing: undefined,
      buggify: nodeBuggify(opts, mRng, scheduler, 'master'),
    };
    this.slave = {
      name: 'slave',
      machine: new SimMachine(scheduler, sRng, { name: 'slave', ...opts.slaveNode }),
      options: sOpts,
      repl: { ...common, replicationRole: 'slave', replicationPartnerIp: undefined, replicationListenIp: 'slave', replicationListenPort: LIVE_PORT, blockDataPath: sOpts.blockDataPath },
      engine: undefined,
      node: undefined,
      committing: undefined,
      buggify: nodeBuggify(opts, sRng, scheduler, 'slave'),
    };
  }

  run<T>(p: Promise<T>): Promise<T> {
    return this.scheduler.runUntilSettled(p);
  }

  async format(): Promise<void> {
    for (const n of [this.master, this.slave]) {
      const d = n.machine.drivers();
      await this.run(d.disk.mkdir(n.options.metaPath, { recursive: true }));
      await this.run(FsEngine.format(d, n.options, { force: false, fsId: `${n.name}-${this.seed}` }));
    }
  }

  private other(n: LiveNode): LiveNode {
    return n === this.master ? this.slave : this.master;
  }

  /** Open a node (after format, a close or a crash) with replication running (SimMachine.openFixingDisk: a disk failing writes is fixed if the mount fails on it). */
  async open(n: LiveNode): Promise<FsEngine> {
    return n.machine.openFixingDisk(() => this.openOnce(n));
  }

  private async openOnce(n: LiveNode): Promise<FsEngine> {
    const d = n.machine.drivers();
    const drivers = { ...d, net: this.tamperable(n, this.network.host(n.name, n.machine.domain)), rng: this.rng.split(`${n.name}/${n.machine.domain.name}`) };
    const repl = new ReplicationNode(n.repl, drivers, { timing: this.opts.timing, catchUpCommitRecords: this.opts.catchUpCommitRecords, catchUpCommitBytes: this.opts.catchUpCommitBytes });
    const engine = await this.run(FsEngine.open(d, n.buggify ? { ...n.options, buggify: n.buggify } : n.options, (e) => repl.attach(e)));
    engine.commitPhases = (phase, reason) => {
      if (phase === 'end') {
        if (n.committing === reason) n.committing = undefined;
        return;
      }
      this.commitsSeen[n.name]++;
      const o = this.other(n);
      if (!LOCAL_COMMITS.has(reason) && o.committing !== undefined && !LOCAL_COMMITS.has(o.committing)) {
        const what = `${this.scheduler.nowMs()} ms: ${n.name} starts a commit (${reason}) while ${o.name} is committing (${o.committing})`;
        const serving = this.slave.node?.liveReceiver?.servingCommitId;
        if (serving !== undefined && serving === this.master.node?.liveSender?.abandonedCommitId) this.overlapsAfterWaitExpired.push(what);
        else this.overlaps.push(what);
      }
      n.committing = reason;
    };
    if (n === this.slave) this.watchApplies(engine);
    await this.run(repl.start(engine));
    n.engine = engine;
    n.node = repl;
    return engine;
  }

  /**
   * Rewrites what a node's replication code writes to a connection, before
   * the network sees it (deterministic corruption of chosen bytes, where the
   * network's bit flips land at random). Undefined: bytes pass unchanged.
   */
  tamper: ((from: 'master' | 'slave', bytes: Uint8Array) => Uint8Array) | undefined;

  private tamperable(n: LiveNode, net: Net): Net {
    const wrap = (conn: Connection): Connection => ({
      get remote() {
        return conn.remote;
      },
      write: (data, owned) => conn.write(this.tamper ? this.tamper(n.name, data.slice()) : data, owned),
      end: () => conn.end(),
      destroy: () => conn.destroy(),
      onData: (h) => conn.onData(h),
      onDrain: (h) => conn.onDrain(h),
      onClose: (h) => conn.onClose(h),
    });
    return {
      listen: (host, port, onConnection) => net.listen(host, port, (conn) => onConnection(wrap(conn))),
      connect: async (host, port, options) => wrap(await net.connect(host, port, options)),
    };
  }

  /**
   * Every transaction the slave applies must be its position + 1 (never twice,
   * never one skipped); a drop of what is not durable (a full disk) moves the
   * position back to the durable txn.
   */
  private watchApplies(engine: FsEngine): void {
    let last = (engine.replicationMeta() as { txn?: number } | undefined)?.txn ?? 0;
    const apply = engine.applyReplicated.bind(engine);
    engine.applyReplicated = (tx, meta) => {
      if (tx.txn !== last + 1) this.applyViolations.push(`${this.scheduler.nowMs()} ms: slave applies txn ${tx.txn} after txn ${last}`);
      apply(tx, meta);
      last = tx.txn;
    };
    const discard = engine.discardUncommitted.bind(engine);
    engine.discardUncommitted = async () => {
      await discard();
      const position = (engine.replicationMeta() as { txn?: number } | undefined)?.txn ?? 0;
      const durable = (engine.durableReplicationMeta() as { txn?: number } | undefined)?.txn ?? 0;
      if (position !== durable || durable > last) this.applyViolations.push(`${this.scheduler.nowMs()} ms: slave dropped uncommitted txns ${durable + 1}..${last} and is at txn ${position}`);
      last = durable;
    };
  }

  get sender(): LiveSender | undefined {
    return this.master.node?.liveSender;
  }

  get receiver(): LiveReceiver | undefined {
    return this.slave.node?.liveReceiver;
  }

  /** The engine of an open node (throws when it is down: a harness bug). */
  engineOf(n: LiveNode): FsEngine {
    if (!n.engine) throw new Error(`${n.name} is not open`);
    return n.engine;
  }

  /** Stop every link fault (probabilities to 0, partitions and holds lifted) and buggify site; latency and bandwidth stay. */
  calmNetwork(): void {
    this.master.buggify?.calm();
    this.slave.buggify?.calm();
    const o = this.network.options;
    o.bitFlipProbability = 0;
    o.resetProbability = 0;
    o.stallProbability = 0;
    o.splitProbability = 0;
    this.network.repair('master', 'slave');
    this.network.release('master', 'slave');
  }

  /** Digest of a node's whole tree (paths, kinds, sizes, links, bytes). */
  digest(n: LiveNode): Promise<string> {
    return this.run(fsDigest(new PathFs(this.engineOf(n))));
  }

  /** lessfsck -t of a closed node. */
  fsck(n: LiveNode): Promise<FsckReport> {
    return this.run(fsck(n.machine.drivers(), n.options, { thorough: true, repair: false }));
  }

  async close(n: LiveNode): Promise<void> {
    if (!n.engine || !n.node) return;
    await this.run(n.node.beforeEngineClose());
    await this.run(n.engine.close());
    await this.run(n.node.afterEngineClose());
    n.engine = undefined;
    n.node = undefined;
    n.committing = undefined;
    // The process exits: its endpoints go, and a later open() is a new incarnation
    // (everything was synced and closed, so the kill takes nothing with it).
    this.network.crashHost(n.name);
    n.machine.crash();
  }

  /** kill -9 (crash) or power cut (power) of a node: its process and network endpoints die. */
  fail(n: LiveNode, kind: 'crash' | 'power'): void {
    this.network.crashHost(n.name);
    if (kind === 'crash') n.machine.crash();
    else n.machine.powerLoss();
    n.engine = undefined;
    n.node = undefined;
    n.committing = undefined;
  }

  /** Run the scheduler for ms of virtual time. */
  async advance(ms: number): Promise<void> {
    await this.scheduler.run({ untilMs: this.scheduler.nowMs() + ms });
  }

  /** Run until the slave has acknowledged everything the master committed (bounded by maxMs). */
  async converge(maxMs = 120_000): Promise<boolean> {
    const deadline = this.scheduler.nowMs() + maxMs;
    while (this.scheduler.nowMs() < deadline) {
      const s = this.master.node?.liveSender;
      if (s && !s.backlog && this.master.engine && !this.master.engine.dirty) return true;
      await this.advance(100);
    }
    return false;
  }
}


/**
 * A workload operation that mostly succeeds: writes, truncates, links and
 * renames of files that exist (chosen from the model), creates in directories
 * that exist, fsyncs and commits, and now and then any randomOp (errors too).
 */
export function liveOp(rng: SimRng, model: ModelFs, blockSizeBytes: number): Op {
  const { files, dirs } = model.paths(2);
  const fresh = (): string => `${rng.pick(dirs)}/${rng.pick(NAMES)}${rng.int(3)}`;
  const bs = blockSizeBytes;
  const r = rng.int(100);
  if (files.length > 0) {
    const file = rng.pick(files);
    if (r < 35) return { op: 'write', path: file, offsetBytes: rng.pick([0, 1, 100, bs - 1, bs, 2 * bs + 7, 5 * bs]), pool: rng.int(POOL_PATTERNS), lengthBytes: 1 + rng.int(4 * bs) };
    if (r < 40) return { op: 'truncate', path: file, sizeBytes: rng.pick([0, 10, bs, bs + 5, 3 * bs]) };
    if (r < 44) return { op: 'unlink', path: file };
    if (r < 48) return { op: 'rename', from: file, to: fresh() };
    if (r < 50) return { op: 'link', from: file, to: fresh() };
    if (r < 54) return { op: 'fsync', path: file };
    if (r < 56) return { op: 'read', path: file, offsetBytes: 0, lengthBytes: 3 * bs };
  }
  if (r < 68) return { op: 'create', path: fresh() };
  if (r < 73) return { op: 'mkdir', path: fresh() };
  if (r < 75) return { op: 'symlink', target: fresh(), path: fresh() };
  if (r < 78) return { op: 'commit' };
  if (r < 80 && dirs.length > 1) return { op: 'rmdir', path: rng.pick(dirs.slice(1)) };
  return randomOp(rng, bs);
}

/** The oracle of a live run: the master's (MasterOracle) and the slave's checks, node faults and the end state. */
export class LiveOracle extends MasterOracle {
  slaveChecks = 0;

  constructor(
    private readonly c: LiveCluster,
    blockSizeBytes: number,
  ) {
    super(c, blockSizeBytes);
  }

  /**
   * The slave's tree is the master's tree at the txn the slave applied, a txn
   * the master committed durably. Skipped (false) when the slave moved during
   * the digest or is down.
   */
  async checkSlave(): Promise<boolean> {
    const e = this.c.slave.engine;
    const r = this.c.receiver;
    // A halted slave (its engine stopped, or dropping what was not durable
    // failed) holds no defined tree until remounted; one dropping what was
    // not durable is between its applied txn and its durable one.
    if (!e || !r || e.stopped || r.remountNeeded || r.dropping) return false;
    this.catchUp();
    // The slave's tree moves when it applies a txn, and when a full disk or
    // an I/O error makes it drop those it had not made durable (it may then
    // apply them again up to the same txn while a digest runs).
    const moves = (): string => `${r.appliedTxn}/${r.stats.transactions}/${r.stats.stalls}/${r.stats.ioErrors}`;
    for (let attempt = 0; attempt < 3; attempt++) {
      const applied = r.appliedTxn;
      const before = moves();
      const durable = this.c.slave.node?.slaveApplier?.durablePosition().txn ?? 0;
      let got: string;
      try {
        got = await this.c.run(fsDigest(new PathFs(e)));
      } catch (err) {
        // A transaction applied (or dropped) during the digest removed a file it was reading: read again.
        if (err instanceof FsError && moves() !== before) continue;
        throw err;
      }
      if (this.c.slave.engine !== e || moves() !== before) continue;
      this.slaveChecks++;
      // The master may have committed while the digest ran (no operation runs: those commits hold the current tree).
      this.catchUp();
      if (durable > applied) this.problem(`slave durable txn ${durable} is beyond its applied txn ${applied}`);
      if (applied > this.masterDurableTxn) this.problem(`slave applied txn ${applied}, beyond the master's durable txn ${this.masterDurableTxn}`);
      const want = this.atTxn.get(applied);
      if (!want) this.problem(`slave at txn ${applied}: the master never committed that txn (or lost it)`);
      else if (!want.has(got)) this.problem(`slave at txn ${applied} holds a tree the master never had at that txn:\n${await this.listing(this.c.slave.engine, 'slave')}`);
      return true;
    }
    return false;
  }

  /**
   * Crash (kill -9) or power loss of the master, the slave or both at this
   * instant, then reopen what failed (the slave first unless masterFirst).
   * A slave must come back at least at the txn its master was told is
   * durable on it; a master at a txn it committed, not before its last fsync.
   */
  async fault(who: 'master' | 'slave' | 'both', kind: 'crash' | 'power', masterFirst = false): Promise<void> {
    const c = this.c;
    const ackedTxn = c.sender?.ackedTxn ?? 0;
    if (who !== 'slave') this.beforeMasterFails();
    if (who !== 'master' && c.slave.engine) c.fail(c.slave, kind);
    if (who !== 'slave' && c.master.engine) c.fail(c.master, kind);
    const openMaster = async (): Promise<void> => {
      if (c.master.engine) return;
      await c.open(c.master);
      await this.masterOpened();
    };
    if (masterFirst) await openMaster();
    if (!c.slave.engine) {
      await c.open(c.slave);
      const durable = c.slave.node?.slaveApplier?.durablePosition().txn ?? 0;
      if (who !== 'master' && durable < ackedTxn) {
        this.problem(`slave ${kind === 'power' ? 'lost power' : 'crashed'} and came back at durable txn ${durable}, but its master had been told txn ${ackedTxn} was durable on it`);
      }
    }
    await openMaster();
    // A fault of the slave alone: the master's operation goes on.
    await this.finishInflight();
  }

  /**
   * Heal everything and check the end state: both nodes up and enabled, the
   * slave converges, the backlog is gone and replog.dta is empty, both trees
   * are the model's, and lessfsck -t is clean on both after a clean unmount.
   */
  async finish(convergeMs = 180_000): Promise<void> {
    const c = this.c;
    c.calmNetwork();
    if (!c.slave.engine) await c.open(c.slave);
    if (!c.master.engine) {
      await c.open(c.master);
      await this.masterOpened();
    }
    for (const n of [c.master, c.slave]) if (!n.node?.control.enabled()) await c.run(n.node!.control.setEnabled(true));
    await c.run(c.engineOf(c.master).commit());
    this.catchUp();
    if (!(await c.converge(convergeMs))) {
      this.problem(`no convergence within ${convergeMs} ms: master ${c.master.node?.control.status().replace(/\n/g, '; ')} slave ${c.slave.node?.control.status().replace(/\n/g, '; ')}`);
    }
    await this.idle(3000);
    const master = c.master.node!;
    if (master.control.backlog()) this.problem('master backlog still reads 1 after convergence');
    if (master.masterLog!.sizeBytes !== 0) this.problem(`replog.dta holds ${master.masterLog!.sizeBytes} bytes after the slave acknowledged everything`);
    if (c.slave.node!.control.backlog()) this.problem('slave backlog still reads 1 after convergence');
    await this.checkMaster();
    await this.checkSlave();
    const md = await c.digest(c.master);
    const sd = await c.digest(c.slave);
    if (md !== sd) this.problem(`slave tree differs from the master's after convergence:\nmaster:\n${await this.listing(c.master.engine, 'master')}\nslave:\n${await this.listing(c.slave.engine, 'slave')}`);
    await c.close(c.master);
    await c.close(c.slave);
    for (const n of [c.master, c.slave]) {
      const rep = await c.fsck(n);
      if (rep.problems.length > 0) this.problem(`lessfsck -t on the ${n.name}: ${JSON.stringify(rep.problems)}`);
    }
    this.problems.push(...c.overlaps.map((o) => `commit overlap: ${o}`), ...c.applyViolations.map((v) => `apply order: ${v}`));
  }
}

/** Seeded partitions and holds between master and slave, opened and healed as a workload goes (op by op). */
export class LinkCuts {
  private readonly planner: CutPlanner;

  constructor(
    private readonly c: LiveCluster,
    probability: number,
  ) {
    this.planner = new CutPlanner(probability);
  }

  /** Before op i: maybe cut the link (for 1..8 ops), or heal a cut that is due. */
  step(i: number, rng: SimRng): void {
    const s = this.planner.next(i, rng);
    if (s) applyLinkStep(this.c.network, s);
  }
}
