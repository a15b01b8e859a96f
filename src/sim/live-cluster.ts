// A live-replication cluster in simulation: a master streaming to a slave over
// a SimNetwork, both SimMachines on one scheduler, so partitions, resets, bit
// flips, crashes and power loss of either or both apply. It records every
// commit of both nodes and fails at once if a master commit and a
// master-ordered slave commit are ever in progress together (DESIGN §6).

import { FsEngine } from '../core/fs/engine.ts';
import type { EngineOptions } from '../core/fs/types.ts';
import { ReplicationNode, type ReplicationConfig } from '../core/replication/node.ts';
import type { LiveTiming } from '../core/replication/sender.ts';
import { simEngineOptions } from './batch-cluster.ts';
import { SimNetwork, type SimNetOptions } from './net.ts';
import { SimMachine, type SimNodeOptions } from './node-env.ts';
import { SimRng } from './rng.ts';
import type { Scheduler } from './scheduler.ts';

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
}

export interface LiveClusterOptions {
  engine?: Partial<EngineOptions>;
  net?: Partial<SimNetOptions>;
  masterNode?: Partial<SimNodeOptions>;
  slaveNode?: Partial<SimNodeOptions>;
  timing?: Partial<LiveTiming>;
  secret?: string;
  maxBacklogSizeBytes?: number;
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
    this.master = {
      name: 'master',
      machine: new SimMachine(scheduler, this.rng.split('master'), { name: 'master', ...opts.masterNode }),
      options: mOpts,
      repl: { ...common, replicationRole: 'master', replicationPartnerIp: 'slave', replicationPartnerPort: LIVE_PORT, blockDataPath: mOpts.blockDataPath },
      engine: undefined,
      node: undefined,
      committing: undefined,
    };
    this.slave = {
      name: 'slave',
      machine: new SimMachine(scheduler, this.rng.split('slave'), { name: 'slave', ...opts.slaveNode }),
      options: sOpts,
      repl: { ...common, replicationRole: 'slave', replicationPartnerIp: undefined, replicationListenIp: 'slave', replicationListenPort: LIVE_PORT, blockDataPath: sOpts.blockDataPath },
      engine: undefined,
      node: undefined,
      committing: undefined,
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

  /** Open a node (after format, a close or a crash) with replication running. */
  async open(n: LiveNode): Promise<FsEngine> {
    const d = n.machine.drivers();
    const drivers = { ...d, net: this.network.host(n.name, n.machine.domain), rng: this.rng.split(`${n.name}/${n.machine.domain.name}`) };
    const repl = new ReplicationNode(n.repl, drivers, { timing: this.opts.timing });
    const engine = await this.run(FsEngine.open(d, n.options, (e) => repl.attach(e)));
    engine.commitPhases = (phase, reason) => {
      if (phase === 'end') {
        if (n.committing === reason) n.committing = undefined;
        return;
      }
      this.commitsSeen[n.name]++;
      const o = this.other(n);
      if (!LOCAL_COMMITS.has(reason) && o.committing !== undefined && !LOCAL_COMMITS.has(o.committing)) {
        this.overlaps.push(`${this.scheduler.nowMs()} ms: ${n.name} starts a commit (${reason}) while ${o.name} is committing (${o.committing})`);
      }
      n.committing = reason;
    };
    await this.run(repl.start(engine));
    n.engine = engine;
    n.node = repl;
    return engine;
  }

  async close(n: LiveNode): Promise<void> {
    if (!n.engine || !n.node) return;
    await this.run(n.node.beforeEngineClose());
    await this.run(n.engine.close());
    await this.run(n.node.afterEngineClose());
    n.engine = undefined;
    n.node = undefined;
    n.committing = undefined;
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
