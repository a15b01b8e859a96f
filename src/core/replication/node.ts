// Replication of one node, as its configuration asks: a master's log (and its
// rotation in batch mode), a watchdir slave, or a slave fed by replogtool.
// The mount (src/cli/lessfs.ts) and the simulator build it the same way:
//
//   const repl = new ReplicationNode(config, drivers);
//   const engine = await FsEngine.open(drivers, options, (e) => repl.attach(e));
//   repl.start(engine);            // timers, watchdir
//   ... repl.control for /.lessfs/replication ...
//   await repl.beforeEngineClose(); await engine.close(); await repl.afterEngineClose();

import { replicationModeOf, type LessfsConfig, type ReplicationMode } from '../config.ts';
import type { ReplicationControl } from '../control.ts';
import { REPLICATION_OFF } from '../control.ts';
import { utf8 } from '../bytes.ts';
import type { Clock, Disk, Logger, Net, Primitives, Rng } from '../drivers.ts';
import { FormatError } from '../errors.ts';
import type { FsEngine } from '../fs/engine.ts';
import type { CommitObserver } from '../fs/types.ts';
import { MasterLog } from './master-log.ts';
import { LiveReceiver } from './receiver.ts';
import { LiveSender, type LiveTiming } from './sender.ts';
import { SlaveApplier, slaveRepairNotice } from './slave.ts';
import { WatchdirSlave } from './watchdir.ts';

export interface ReplicationDrivers {
  disk: Disk;
  clock: Clock;
  logger: Logger;
  primitives: Primitives;
  /** Live modes only. */
  net?: Net;
  rng?: Rng;
}

export type ReplicationConfig = Pick<
  LessfsConfig,
  | 'replication'
  | 'replicationRole'
  | 'replicationBatchMode'
  | 'replicationPartnerIp'
  | 'replicationWatchdir'
  | 'replicationEnabled'
  | 'rotateReplogSizeBytes'
  | 'rotateReplogIntervalS'
  | 'blockDataPath'
> &
  /** Live modes (defaults as in lessfs.cfg). */
  Partial<Pick<LessfsConfig, 'replicationPartnerPort' | 'replicationListenIp' | 'replicationListenPort' | 'replicationSecret' | 'maxBacklogSizeBytes'>> & {
    /** `lessfs --accept-replog-gap`: a master mounts although log files with committed transactions are missing (MasterLogOptions.acceptGap). */
    acceptReplogGap?: boolean;
  };

export class ReplicationNode {
  readonly mode: ReplicationMode;
  private log: MasterLog | undefined;
  private applier: SlaveApplier | undefined;
  private watch: WatchdirSlave | undefined;
  private sender: LiveSender | undefined;
  private receiver: LiveReceiver | undefined;
  private slaveEnabled: boolean;
  control: ReplicationControl = REPLICATION_OFF;

  constructor(
    private readonly config: ReplicationConfig,
    private readonly drivers: ReplicationDrivers,
    options: { watchdirPollMs?: number; watchdirChunkBytes?: number; timing?: Partial<LiveTiming>; catchUpCommitRecords?: number; catchUpCommitBytes?: number } = {},
  ) {
    this.mode = replicationModeOf(config as LessfsConfig);
    this.slaveEnabled = config.replicationEnabled;
    this.pollMs = options.watchdirPollMs;
    this.chunkBytes = options.watchdirChunkBytes;
    this.timing = options.timing;
    this.catchUp = { catchUpCommitRecords: options.catchUpCommitRecords, catchUpCommitBytes: options.catchUpCommitBytes };
    if ((this.mode === 'master-live' || this.mode === 'slave-listen') && (!drivers.net || !drivers.rng)) {
      throw new FormatError('EFORMAT', `live replication (${this.mode}) needs network and random drivers`);
    }
  }

  private readonly pollMs: number | undefined;
  /** Reads of a rotated file by the watchdir (ROTATED_FILE_CHUNK_BYTES unless a simulation sets small ones). */
  private readonly chunkBytes: number | undefined;
  private readonly timing: Partial<LiveTiming> | undefined;
  /** The sender's catch-up commit bounds (LiveSender; a simulation sets small ones). */
  private readonly catchUp: { catchUpCommitRecords?: number; catchUpCommitBytes?: number };

  get liveSender(): LiveSender | undefined {
    return this.sender;
  }
  get liveReceiver(): LiveReceiver | undefined {
    return this.receiver;
  }

  private get secret(): Uint8Array | undefined {
    return this.config.replicationSecret === undefined ? undefined : utf8(this.config.replicationSecret);
  }

  get masterLog(): MasterLog | undefined {
    return this.log;
  }
  get slaveApplier(): SlaveApplier | undefined {
    return this.applier;
  }
  get watchdir(): WatchdirSlave | undefined {
    return this.watch;
  }

  /** For FsEngine.open: the commit observer (a master's log), before the mount's first commit. */
  async attach(engine: FsEngine): Promise<CommitObserver | undefined> {
    if (this.mode !== 'master-batch' && this.mode !== 'master-live') return undefined;
    this.log = await MasterLog.open(this.drivers, {
      fsId: engine.format.fsId,
      blockSizeBytes: engine.options.blockSizeBytes,
      dir: this.config.blockDataPath,
      batch: this.mode === 'master-batch',
      rotateSizeBytes: this.config.rotateReplogSizeBytes,
      rotateIntervalMs: this.config.rotateReplogIntervalS * 1000,
      enabled: this.config.replicationEnabled,
      buggify: engine.buggify,
      acceptGap: this.config.acceptReplogGap === true,
    }, engine);
    return this.log;
  }

  /** After the engine is open: start timers, the watchdir, the sender or the listener; build the control. */
  async start(engine: FsEngine): Promise<void> {
    if (this.mode === 'master-live') {
      const log = this.log as MasterLog;
      const sender = new LiveSender(
        { net: this.drivers.net as Net, clock: this.drivers.clock, logger: this.drivers.logger, primitives: this.drivers.primitives, rng: this.drivers.rng as Rng },
        log,
        engine,
        {
          host: this.config.replicationPartnerIp as string,
          port: this.config.replicationPartnerPort ?? 101,
          fsId: engine.format.fsId,
          blockSizeBytes: engine.options.blockSizeBytes,
          secret: this.secret,
          enabled: this.config.replicationEnabled,
          maxBacklogBytes: this.config.maxBacklogSizeBytes ?? 0,
          ...this.catchUp,
          timing: this.timing,
          buggify: engine.buggify,
        },
      );
      this.sender = sender;
      sender.start();
      this.control = {
        role: 'master',
        enabled: () => sender.enabled,
        setEnabled: async (on) => sender.setEnabled(on),
        // Writes not yet committed are not on the slave either.
        backlog: () => sender.backlog || engine.pendingChanges > 0,
        sequence: () => log.sequence,
        rotate: undefined,
        status: () =>
          statusText({
            role: 'master',
            mode: `live to ${this.config.replicationPartnerIp}:${this.config.replicationPartnerPort ?? 101}`,
            enabled: sender.enabled ? 1 : 0,
            connection: sender.connectionState,
            master_txn: log.committedTxn,
            // "-": not known (no slave has reported since this mount), never a made-up 0.
            slave_txn: sender.slaveReported ? sender.ackedTxn : '-',
            slave_applied_txn: sender.slaveReported ? sender.slaveAppliedTxn : '-',
            backlog_bytes: sender.backlogBytes,
            lag_seconds: sender.lagSeconds()?.toFixed(1) ?? '-',
            log_bytes: log.sizeBytes,
            pinned_extents: log.pinnedExtents,
            pinned_free_bytes: engine.pinnedFree.bytes,
            last_error: sender.lastError ?? log.lastError ?? '-',
          }),
      };
      return;
    }
    if (this.mode === 'slave-listen') {
      const applier = new SlaveApplier(engine, this.drivers.primitives, this.drivers.logger);
      this.sayRepaired(applier);
      this.applier = applier;
      const receiver = new LiveReceiver(
        { net: this.drivers.net as Net, clock: this.drivers.clock, logger: this.drivers.logger, primitives: this.drivers.primitives, rng: this.drivers.rng as Rng },
        engine,
        applier,
        {
          host: this.config.replicationListenIp ?? '127.0.0.1',
          port: this.config.replicationListenPort ?? 101,
          blockSizeBytes: engine.options.blockSizeBytes,
          secret: this.secret,
          enabled: this.config.replicationEnabled,
          timing: this.timing,
          buggify: engine.buggify,
        },
      );
      this.receiver = receiver;
      await receiver.start();
      this.control = {
        role: 'slave',
        enabled: () => receiver.enabled,
        setEnabled: async (on) => receiver.setEnabled(on),
        backlog: () => receiver.appliedTxn > applier.durablePosition().txn,
        sequence: () => applier.position().sequence,
        rotate: undefined,
        status: () => {
          const durable = applier.durablePosition();
          return statusText({
            role: 'slave',
            mode: `live, listening on ${this.config.replicationListenIp ?? '127.0.0.1'}:${receiver.port ?? '-'}`,
            enabled: receiver.enabled ? 1 : 0,
            connection: receiver.connected ? `connected from ${receiver.masterAddress}` : 'waiting for the master',
            master_fs_id: durable.fsId ?? '-',
            slave_txn: durable.txn,
            slave_applied_txn: receiver.appliedTxn,
            repaired_at_txn: durable.repairedAtTxn ?? '-',
            // A full disk, an I/O error or a stopped engine stopped the stream (docs/replication-protocol.md, "A full disk on the slave", "An I/O error on the slave").
            stream_stopped: receiver.stalledBy ?? '-',
            last_error: receiver.lastError ?? '-',
          });
        },
      };
      return;
    }
    if (this.mode === 'master-batch') {
      const log = this.log as MasterLog;
      log.start();
      this.control = {
        role: 'master',
        enabled: () => log.enabled,
        setEnabled: async (on) => log.setEnabled(on),
        backlog: () => log.pendingTransactions > 0,
        sequence: () => log.sequence,
        rotate: () => log.rotate(),
        status: () =>
          statusText({
            role: 'master',
            mode: 'batch (log files, no connection)',
            enabled: log.enabled ? 1 : 0,
            sequence: log.sequence,
            master_txn: engine.txn,
            logged_txn: log.lastTxn,
            log_bytes: log.sizeBytes,
            log_transactions: log.pendingTransactions,
            rotations: log.rotations,
            last_error: log.lastError ?? '-',
          }),
      };
      return;
    }
    if (this.mode === 'slave-watchdir' || this.mode === 'slave-replogtool') {
      const applier = new SlaveApplier(engine, this.drivers.primitives, this.drivers.logger);
      this.sayRepaired(applier); // and refuses a master's store now, not at the first file
      this.applier = applier;
      const dir = this.config.replicationWatchdir;
      if (this.mode === 'slave-watchdir' && dir !== undefined) {
        const watch = new WatchdirSlave(this.drivers, applier, dir, this.pollMs, engine.buggify, this.chunkBytes);
        this.watch = watch;
        if (!this.slaveEnabled) watch.setEnabled(false);
        watch.start();
      }
      const watch = this.watch;
      this.control = {
        role: 'slave',
        enabled: () => (watch ? watch.enabled : this.slaveEnabled),
        setEnabled: async (on) => {
          this.slaveEnabled = on;
          watch?.setEnabled(on);
        },
        backlog: () => watch?.backlog ?? false,
        sequence: () => applier.position().sequence,
        rotate: undefined,
        status: () => {
          const pos = applier.position();
          return statusText({
            role: 'slave',
            mode: watch ? `watchdir ${dir}` : 'replogtool (files applied with replogtool -c while unmounted)',
            enabled: (watch ? watch.enabled : this.slaveEnabled) ? 1 : 0,
            master_fs_id: pos.fsId ?? '-',
            sequence: pos.sequence,
            slave_txn: pos.txn,
            files_applied: watch?.stats.filesApplied ?? 0,
            duplicates_skipped: watch?.stats.duplicatesSkipped ?? 0,
            files_refused: watch?.stats.filesRefused ?? 0,
            // A full disk keeps the next file from being applied (docs/replication-log.md, "A full disk on a batch slave").
            applying_stopped: watch?.stalledBy ?? '-',
            repaired_at_txn: pos.repairedAtTxn ?? '-',
            last_error: watch?.stats.lastError ?? '-',
          });
        },
      };
    }
  }

  /** A slave repaired by lessfsck -r says so at every mount until it is re-seeded (it replicates on). */
  private sayRepaired(applier: SlaveApplier): void {
    const notice = slaveRepairNotice(applier.position());
    if (notice) this.drivers.logger.log(0, `replication: ${notice}`);
  }

  /** Stop applying files and streams (before the engine's last commit). */
  async beforeEngineClose(): Promise<void> {
    await this.watch?.stop();
    await this.receiver?.stop();
  }

  /** Close the log (after the engine's last commit, which it records). */
  async afterEngineClose(): Promise<void> {
    await this.sender?.stop();
    await this.log?.close();
  }
}

function statusText(fields: Record<string, string | number>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}: ${v}\n`)
    .join('');
}
