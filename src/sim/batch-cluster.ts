// A batch-replication cluster in simulation: a master writing and rotating
// replog.dta-SEQUENCE files, a shipper that copies them to the slave's watch
// directory (or drops, duplicates, reorders, truncates, corrupts them), and a
// watchdir slave. Both nodes are SimMachines on one scheduler, so power loss,
// crashes and torn writes apply to either.

import { FsEngine, joinPath } from '../core/fs/engine.ts';
import { fsck, type FsckReport } from '../core/fs/fsck.ts';
import { PathFs } from '../core/fs/path-fs.ts';
import type { EngineOptions } from '../core/fs/types.ts';
import { scanLiveLog, validateRotatedFile } from '../core/replication/log-file.ts';
import { LIVE_LOG_NAME, parseRotatedLogName, readFileWhole } from '../core/replication/master-log.ts';
import { ReplicationNode, type ReplicationConfig } from '../core/replication/node.ts';
import { nodeBuggify, type BuggifyChoice, type SimBuggify } from './buggify.ts';
import { SimRng } from './rng.ts';
import type { Scheduler } from './scheduler.ts';
import { SimMachine, type SimNodeOptions } from './node-env.ts';
import { fsDigest, fsListingText } from './workload.ts';

export const MASTER_DIR = '/master';
export const SLAVE_DIR = '/slave';
export const WATCH_DIR = '/slave/incoming';

export interface SimNode {
  machine: SimMachine;
  options: EngineOptions;
  repl: ReplicationConfig;
  engine: FsEngine | undefined;
  node: ReplicationNode | undefined;
  /** Its rare-path hooks, kept across incarnations (undefined: buggify off). */
  buggify: SimBuggify | undefined;
}

export function simEngineOptions(dir: string, overrides: Partial<EngineOptions> = {}): EngineOptions {
  return {
    metaPath: `${dir}/mta`,
    blockDataPath: `${dir}/dta`,
    blockSizeBytes: 4096,
    hashName: 'sha256',
    codec: 0,
    deduplication: true,
    cacheSizeBytes: 1 << 20,
    commitIntervalMs: 5_000,
    syncRelax: 0,
    lmdbMapSizeBytes: 0,
    readOnly: false,
    ...overrides,
  };
}

/** A rotated file of the master, validated. */
export interface RotatedFileInfo {
  name: string;
  sequence: number;
  firstTxn: number;
  lastTxn: number;
  bytes: Uint8Array;
}

/** The master's log as one chain: rotated files 1..N, then the live log. */
export interface MasterLogChain {
  files: RotatedFileInfo[];
  liveSequence: number;
  liveFirstTxn: number;
  liveLastTxn: number;
}

/** A log chain that does not hold together (a test failure, with what broke). */
export class LogChainError extends Error {
  readonly code = 'ELOGCHAIN';
}

export interface BatchClusterOptions extends BuggifyChoice {
  engine?: Partial<EngineOptions>;
  master?: Partial<ReplicationConfig>;
  masterNode?: Partial<SimNodeOptions>;
  slaveNode?: Partial<SimNodeOptions>;
  watchdirPollMs?: number;
  /** The watchdir's read size for rotated files (a file larger than it is read in chunks, twice). */
  watchdirChunkBytes?: number;
  /** The master's fs id (default `master-SEED`): two clusters can share one, or differ. */
  masterFsId?: string;
}

export class BatchCluster {
  readonly master: SimNode;
  readonly slave: SimNode;

  constructor(
    readonly scheduler: Scheduler,
    readonly seed: number,
    private readonly opts: BatchClusterOptions = {},
  ) {
    const rng = new SimRng(seed);
    const base: Omit<ReplicationConfig, 'blockDataPath'> = {
      replication: 'masterslave',
      replicationRole: 'master',
      replicationBatchMode: true,
      replicationPartnerIp: undefined,
      replicationWatchdir: undefined,
      replicationEnabled: true,
      rotateReplogSizeBytes: 0,
      rotateReplogIntervalS: 0,
    };
    const mOpts = simEngineOptions(MASTER_DIR, opts.engine);
    const mRng = rng.split('master');
    const sRng = rng.split('slave');
    this.master = {
      machine: new SimMachine(scheduler, mRng, { name: 'master', ...opts.masterNode }),
      options: mOpts,
      repl: { ...base, blockDataPath: mOpts.blockDataPath, ...opts.master },
      engine: undefined,
      node: undefined,
      buggify: nodeBuggify(opts, mRng, scheduler, 'master'),
    };
    const sOpts = simEngineOptions(SLAVE_DIR, { ...opts.engine, replica: true });
    this.slave = {
      machine: new SimMachine(scheduler, sRng, { name: 'slave', ...opts.slaveNode }),
      options: sOpts,
      repl: { ...base, replicationRole: 'slave', replicationWatchdir: WATCH_DIR, blockDataPath: sOpts.blockDataPath },
      engine: undefined,
      node: undefined,
      buggify: nodeBuggify(opts, sRng, scheduler, 'slave'),
    };
  }

  run<T>(p: Promise<T>): Promise<T> {
    return this.scheduler.runUntilSettled(p);
  }

  async format(): Promise<void> {
    for (const [n, id] of [[this.master, this.opts.masterFsId ?? `master-${this.seed}`], [this.slave, `slave-${this.seed}`]] as const) {
      const d = n.machine.drivers();
      await this.run(d.disk.mkdir(n.options.metaPath, { recursive: true }));
      await this.run(FsEngine.format(d, n.options, { force: false, fsId: id }));
    }
    // Durable, as an installation's directory would be: a power loss must not take it.
    const disk = this.slave.machine.drivers().disk;
    await this.run(disk.mkdir(WATCH_DIR, { recursive: true }));
    for (const dir of ['/', SLAVE_DIR, WATCH_DIR]) await this.run(disk.syncDir(dir));
  }

  /** Open a node (after format or a crash; SimMachine.openFixingDisk). The slave's watchdir runs only when `watch`. */
  async open(n: SimNode, watch = false): Promise<FsEngine> {
    return n.machine.openFixingDisk(() => this.openOnce(n, watch));
  }

  private async openOnce(n: SimNode, watch: boolean): Promise<FsEngine> {
    const d = n.machine.drivers();
    const repl = new ReplicationNode(
      { ...n.repl, replicationWatchdir: n === this.slave && watch ? WATCH_DIR : undefined, replicationBatchMode: true },
      d,
      { watchdirPollMs: this.opts.watchdirPollMs, watchdirChunkBytes: this.opts.watchdirChunkBytes },
    );
    const engine = await this.run(FsEngine.open(d, n.buggify ? { ...n.options, buggify: n.buggify } : n.options, (e) => repl.attach(e)));
    repl.start(engine);
    n.engine = engine;
    n.node = repl;
    return engine;
  }

  async close(n: SimNode): Promise<void> {
    if (!n.engine || !n.node) return;
    await this.run(n.node.beforeEngineClose());
    await this.run(n.engine.close());
    await this.run(n.node.afterEngineClose());
    n.engine = undefined;
    n.node = undefined;
  }

  /** Forget a node's engine after its machine crashed or lost power. */
  dropped(n: SimNode): void {
    n.engine = undefined;
    n.node = undefined;
  }

  /** Rotated files in the master's BLOCKDATA_PATH, by sequence. */
  async masterFiles(): Promise<{ name: string; sequence: number }[]> {
    const disk = this.master.machine.drivers().disk;
    const names = await this.run(disk.readdir(this.master.options.blockDataPath));
    return names
      .map((name) => ({ name, sequence: parseRotatedLogName(name) }))
      .filter((f): f is { name: string; sequence: number } => f.sequence !== undefined)
      .sort((a, b) => a.sequence - b.sequence);
  }

  async readMasterFile(name: string): Promise<Uint8Array> {
    const disk = this.master.machine.drivers().disk;
    return this.run(readFileWhole(disk, joinPath(this.master.options.blockDataPath, name)));
  }

  /** Deliver bytes into the slave's watch directory as `name` (copy under a temporary name, then rename, as examples/ does). */
  async deliver(name: string, bytes: Uint8Array, atomically = true): Promise<void> {
    const disk = this.slave.machine.drivers().disk;
    await this.run((async () => {
      const tmp = joinPath(WATCH_DIR, atomically ? `.${name}.part` : name);
      const f = await disk.open(tmp, { create: true });
      try {
        await f.truncate(0);
        await f.write(0, bytes);
        await f.sync();
      } finally {
        await f.close();
      }
      if (atomically) await disk.rename(tmp, joinPath(WATCH_DIR, name));
      await disk.syncDir(WATCH_DIR);
    })());
  }

  /** Names in the watch directory. */
  async watchNames(): Promise<string[]> {
    return (await this.run(this.slave.machine.drivers().disk.readdir(WATCH_DIR))).sort();
  }

  /** The open engine of a node (asserts it is open). */
  engineOf(n: SimNode): FsEngine {
    if (!n.engine) throw new Error(`${n.machine.options.name} is not open`);
    return n.engine;
  }

  /** fsDigest of a node's tree (every path, kind, size, links and bytes). */
  async digest(n: SimNode): Promise<string> {
    return this.run(fsDigest(new PathFs(this.engineOf(n))));
  }

  /** A node's tree as text, one path a line (for problem reports). */
  listing(n: SimNode): Promise<string> {
    return this.run(fsListingText(new PathFs(this.engineOf(n))));
  }

  /** lessfsck of a closed node. */
  async fsck(n: SimNode, thorough = true): Promise<FsckReport> {
    if (n.engine) throw new Error(`${n.machine.options.name} must be closed for fsck`);
    return this.run(fsck(n.machine.drivers(), n.options, { thorough, repair: false }));
  }

  /** Rotate the master's log now (rotate_replog). */
  async rotate(): Promise<void> {
    const rotate = this.master.node?.control.rotate;
    if (!rotate) throw new Error('the master is not open as a batch-mode master');
    await this.run(rotate());
  }

  /**
   * Read and check the master's whole log: every rotated file validates (fs
   * id, block size, the sequence of its name, CRCs, structure), sequences run
   * 1..N without a gap, each file starts at the txn after the previous one's
   * last, and the live log continues with sequence N + 1 from there, holds
   * whole transactions only and ends at the database's txn. Throws
   * LogChainError naming the first break. The master must be open and idle.
   */
  async masterLogChain(): Promise<MasterLogChain> {
    const engine = this.engineOf(this.master);
    const log = this.master.node?.masterLog;
    if (!log) throw new Error('the master has no replication log');
    const p = this.master.machine.drivers().primitives;
    const expect = { fsId: engine.format.fsId, blockSizeBytes: engine.options.blockSizeBytes };
    const files: RotatedFileInfo[] = [];
    let nextTxn = 1;
    for (const f of await this.masterFiles()) {
      const want = files.length + 1;
      if (f.sequence !== want) throw new LogChainError(`rotated files: found ${f.name} where replog.dta-${want} was expected (sequence gap)`);
      const bytes = await this.readMasterFile(f.name);
      const v = validateRotatedFile(p, bytes, { ...expect, sequence: f.sequence, fileName: f.name });
      if (v.header.firstTxn !== nextTxn) throw new LogChainError(`${f.name} starts at txn ${v.header.firstTxn}, expected ${nextTxn} (txn gap or overlap)`);
      files.push({ name: f.name, sequence: f.sequence, firstTxn: v.header.firstTxn, lastTxn: v.trailer.lastTxn, bytes });
      nextTxn = v.trailer.lastTxn + 1;
    }
    const live = await this.readMasterFile(LIVE_LOG_NAME);
    const scan = scanLiveLog(p, live, { fileName: LIVE_LOG_NAME });
    if (!scan.header) throw new LogChainError(`${LIVE_LOG_NAME} has no header (${live.length} bytes)`);
    // A failed append or rotation (an injected I/O error) may leave bytes after the last commit until the next append cuts them.
    if ((scan.tail || scan.uncommitted) && !log.tailPending) {
      throw new LogChainError(`${LIVE_LOG_NAME} of an idle master ends in a torn tail or uncommitted records: ${scan.tail?.detail ?? `txn ${scan.uncommitted?.txn}`}`);
    }
    const h = scan.header;
    if (h.fsId !== expect.fsId || h.blockSizeBytes !== expect.blockSizeBytes) throw new LogChainError(`${LIVE_LOG_NAME} is of ${h.fsId}/${h.blockSizeBytes}, the master ${expect.fsId}/${expect.blockSizeBytes}`);
    if (h.sequence !== files.length + 1) throw new LogChainError(`${LIVE_LOG_NAME} has sequence ${h.sequence}, expected ${files.length + 1} after the rotated files`);
    if (h.firstTxn !== nextTxn) throw new LogChainError(`${LIVE_LOG_NAME} starts at txn ${h.firstTxn}, expected ${nextTxn} after the rotated files`);
    if (log.sequence !== h.sequence) throw new LogChainError(`MasterLog.sequence ${log.sequence}, ${LIVE_LOG_NAME} says ${h.sequence}`);
    if (scan.lastTxn !== log.lastTxn) throw new LogChainError(`${LIVE_LOG_NAME} ends at txn ${scan.lastTxn}, MasterLog.lastTxn says ${log.lastTxn}`);
    // durableTxn, not txn: a commit refused for want of room leaves its txn frozen, not logged.
    if (log.lastTxn !== engine.durableTxn) throw new LogChainError(`the log ends at txn ${log.lastTxn}, the database is at txn ${engine.durableTxn}`);
    return { files, liveSequence: h.sequence, liveFirstTxn: h.firstTxn, liveLastTxn: scan.lastTxn };
  }

  /**
   * Let the slave's watchdir finish the scan it starts when opened, so a test
   * can call scanOnce itself without a timer's scan running beside it (use a
   * watchdirPollMs far beyond the test's virtual time).
   */
  async settleWatch(msMax = 100): Promise<void> {
    await this.scheduler.run({ untilMs: this.scheduler.nowMs() + msMax });
    // The scan an open (or turning replication on) starts may apply several files: it ends before the slave is checked.
    const watch = this.slave.node?.watchdir;
    if (watch) await this.scheduler.run({ untilMs: this.scheduler.nowMs() + 600_000, done: () => !watch.scanning });
  }

  /** One watchdir scan of the open slave, run to completion. */
  async scan(): Promise<void> {
    const watch = this.slave.node?.watchdir;
    if (!watch) throw new Error('the slave is not open with its watchdir');
    await this.run(watch.scanOnce());
  }
}
