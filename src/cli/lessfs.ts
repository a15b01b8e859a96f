// lessfs CONFIG MOUNTPOINT [-o OPTS] [-f] : mount a lessfs filesystem.

import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import type { LessfsConfig } from '../core/config.ts';
import { ControlFiles } from '../core/control.ts';
import type { Logger } from '../core/drivers.ts';
import { FsError } from '../core/errors.ts';
import { FsEngine } from '../core/fs/engine.ts';
import { engineOptionsFromConfig, spaceReserveFor } from '../core/fs/options.ts';
import { FreezeControl } from '../core/freeze.ts';
import { IoGate } from '../core/gate.ts';
import { ManagementServer } from '../core/mgmt/server.ts';
import { ReplicationNode } from '../core/replication/node.ts';
import { SpaceGuard } from '../core/space-guard.ts';
import { RealNet } from '../real/net.ts';
import { RealRng } from '../real/rng.ts';
import { FileLogger, realEngineDrivers, StderrLogger } from '../real/drivers.ts';
import { LessfsFuseOps } from '../real/fuse/ops.ts';
import { TraceRecorder } from '../real/fuse/trace-recorder.ts';
import { clearStaleMount, fuseAttrHandoff, fuseCaller, fuseReadHandoff, fuseRequest, MountRefusedError, mountedAt, mountFuse, type Mounted } from '../real/fuse/mount.ts';
import { acquireLock, type FsLock } from '../real/lock.ts';
import { CliError, EXIT_OK, EXIT_RUNTIME, loadConfig, parseCommandLine, UsageError, type Command } from './common.ts';
import { withLessfsNodeFlags } from './runtime-flags.ts';

const usage = `Usage: lessfs CONFIG MOUNTPOINT [-o OPTIONS] [-f] [--log FILE] [--trace FILE] [--accept-replog-gap]

Mount the lessfs filesystem described by CONFIG (a lessfs.cfg) at MOUNTPOINT.

  -f, --foreground   stay in the foreground (default: run as a daemon)
  -o OPTIONS         extra FUSE mount options, comma separated (override the
                     defaults big_writes,max_read=BLKSIZE,max_write=BLKSIZE,
                     use_ino,default_permissions,allow_other,attr_timeout,...)
      --log FILE     append the log here (default as a daemon: META_PATH/lessfs.log;
                     in the foreground: standard error)
      --trace FILE   record every completed FUSE operation to FILE (names, sizes,
                     offsets, results; no file contents) for lessfs-sim
                     replay-trace; overrides TRACE_FILE in CONFIG
      --accept-replog-gap
                     a replication master whose log files with committed
                     transactions are missing (replog.dta, or a rotated file
                     before the newest) mounts anyway: the gap is logged, a new
                     log sequence starts, and its slave must be re-seeded.
                     Without it such a mount is refused. Give it once.
  -h, --help         show this help

Unmount with: fusermount -u MOUNTPOINT (or send SIGTERM/SIGINT to the process).
Exit status: 0 unmounted cleanly, 1 error, 2 usage error.
`;

export const lessfs: Command = {
  name: 'lessfs',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandLine(argv, {
      options: {
        foreground: { type: 'boolean', short: 'f' },
        options: { type: 'string', short: 'o', multiple: true },
        log: { type: 'string' },
        trace: { type: 'string' },
        'accept-replog-gap': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        'daemon-child': { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(usage);
      return EXIT_OK;
    }
    if (positionals.length < 2) throw new UsageError(positionals.length === 0 ? 'no CONFIG and MOUNTPOINT given' : 'no MOUNTPOINT given');
    if (positionals.length > 2) throw new UsageError(`unexpected argument '${positionals[2]}'`);
    const [cfgPath, mnt] = positionals.map((p) => resolve(p));
    const extra = (values.options ?? []).flatMap((o) => o.split(',')).map((o) => o.trim()).filter((o) => o.length > 0);
    const config = loadConfig('lessfs', cfgPath);
    if (!values.foreground) return daemonize(argv, config, mnt, values.log);
    const tracePath = values.trace !== undefined ? resolve(values.trace) : config.traceFile;
    if (tracePath !== undefined && (tracePath === mnt || tracePath.startsWith(`${mnt}/`))) {
      throw new CliError(`the trace file ${tracePath} is inside the mount point ${mnt} (expected a path outside it: the mount would record its own trace writes)`);
    }
    return foreground(values['accept-replog-gap'] ? { ...config, acceptReplogGap: true } : config, mnt, extra, values.log, tracePath);
  },
};

/** Lines of a failed daemon start shown by the parent (the log has them all). */
const FAILED_START_LINES_SHOWN = 10;

/**
 * What was appended to the log at `path` from `startBytes` on: the lines of
 * this start only (the child appends; older attempts' lines are before it).
 * From the start of the file when it shrank meanwhile (rotated or truncated).
 */
function logLinesSince(path: string, startBytes: number): string[] {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const from = size < startBytes ? 0 : startBytes;
    const bytes = Buffer.alloc(size - from);
    let done = 0;
    while (done < bytes.length) {
      const n = readSync(fd, bytes, done, bytes.length - done, from + done);
      if (n === 0) break;
      done += n;
    }
    return bytes.subarray(0, done).toString('utf8').split('\n').filter((l) => l.trim() !== '');
  } finally {
    closeSync(fd);
  }
}

function failedStartText(exitCode: number | null, log: string, startBytes: number): string {
  const lines = logLinesSince(log, startBytes);
  if (lines.length === 0) return `mount failed (exit ${exitCode}); it wrote nothing to ${log}`;
  const shown = lines.slice(-FAILED_START_LINES_SHOWN);
  const cut = lines.length - shown.length;
  const head = cut > 0 ? `its last ${shown.length} lines in ${log} (${cut} before them not shown)` : `its lines in ${log}`;
  return `mount failed (exit ${exitCode}); ${head}:\n${shown.join('\n')}`;
}

/** Start ourselves in the background with -f and wait until the mount is up. */
async function daemonize(argv: string[], config: LessfsConfig, mnt: string, logPath: string | undefined): Promise<number> {
  const log = resolve(logPath ?? `${config.metaPath}/lessfs.log`);
  const fd = openSync(log, 'a');
  // The child appends: everything past this offset is this start's (earlier ones stay in the log).
  const startBytes = fstatSync(fd).size;
  const script = process.argv[1];
  const child = spawn(process.execPath, [...withLessfsNodeFlags(process.execArgv), script, ...argv, '--foreground', '--daemon-child'], {
    detached: true,
    stdio: ['ignore', fd, fd, 'ipc'],
  });
  closeSync(fd);
  let exited: number | null | undefined;
  let ready = false;
  child.on('exit', (code) => { exited = code; });
  // The child says when its mount is up (a stale mount in /proc/mounts must not count).
  child.on('message', (m) => { if ((m as { mounted?: boolean }).mounted) ready = true; });
  for (let i = 0; i < 300; i++) {
    if (exited !== undefined) {
      throw new CliError(failedStartText(exited, log, startBytes));
    }
    if (ready) {
      if (child.connected) child.disconnect();
      child.unref();
      process.stdout.write(`lessfs: mounted ${mnt} (pid ${child.pid}, log ${log}); unmount with: fusermount -u ${mnt}\n`);
      return EXIT_OK;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGTERM');
  throw new CliError(`mount of ${mnt} did not appear within 30 s; see ${log}`);
}

async function foreground(config: LessfsConfig & { acceptReplogGap?: boolean }, mnt: string, extra: string[], logPath: string | undefined, tracePath: string | undefined): Promise<number> {
  const logger = logPath ? new FileLogger(config.debug, resolve(logPath), 'lessfs') : new StderrLogger(config.debug, 'lessfs');
  let lock: FsLock & { stalePid?: number };
  try {
    lock = acquireLock(config.metaPath, `lessfs mount ${mnt}`);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (lock.stalePid) logger.log(0, `the previous lessfs (pid ${lock.stalePid}) ended without unmounting: taking over its lock`);
  let engine: FsEngine | undefined;
  let mounted: Mounted | undefined;
  let mgmt: ManagementServer | undefined;
  let space: SpaceGuard | undefined;
  let ioGate = new IoGate();
  let lessfsOps: LessfsFuseOps | undefined;
  let repl: ReplicationNode | undefined;
  let trace: TraceRecorder | undefined;
  try {
    await clearStaleMount(mnt, (m) => logger.log(0, m));
    const options = engineOptionsFromConfig(config, { spaceReserveBytes: spaceReserveFor((await realEngineDrivers(logger).disk.space(config.metaPath)).totalBytes) });
    const replNode = new ReplicationNode(config, { ...realEngineDrivers(logger), net: new RealNet(), rng: new RealRng() });
    repl = replNode;
    engine = await FsEngine.open(realEngineDrivers(logger), options, (e) => replNode.attach(e));
    await replNode.start(engine);
    if (replNode.mode !== 'off') logger.log(1, `replication: ${replNode.mode}`);
    if (engine.recovered) logger.log(0, `recovered from an unclean shutdown: at transaction ${engine.txn}`);
    const slave = options.replica === true;
    // Kernel cache timeouts: a slave's tree changes underneath the kernel, so it
    // caches nothing. A master caches attributes and names for 1 s: with 0 an
    // lstat costs a FUSE round trip each time (measured 50x slower lstat, which
    // rsync does for every file), and the price of 1 s is that the other names
    // of a hard-linked file show its new size/mode up to 1 s late (libfuse2
    // gives each name its own kernel inode). `-o attr_timeout=0` opts out.
    const attrTimeoutS = slave ? 0 : 1;
    const control = new ControlFiles(engine, replNode.control, {
      contentTtlMs: attrTimeoutS * 1000 + 1000,
      nowMs: () => Date.now(),
      pause: () => new Promise((resolve) => setImmediate(resolve)),
    });
    const gate = new IoGate();
    ioGate = gate;
    const drivers = realEngineDrivers(logger);
    const opened = engine;
    space = new SpaceGuard(drivers.disk, drivers.clock, logger, {
      paths: [config.blockDataPath, config.metaPath],
      minFreePercent: config.minSpaceFreePercent,
      checkIntervalMs: 2000,
      reusableBytes: { path: config.blockDataPath, bytes: () => opened.reusableDataBytes },
    });
    await space.start();
    if (tracePath !== undefined) {
      try {
        trace = await TraceRecorder.open(tracePath, { blockSizeBytes: config.blockSizeBytes, rootEntries: engine.readdir(1).length, logger });
      } catch (err) {
        throw new CliError(`cannot record the trace to ${tracePath}: ${(err as Error).message}`);
      }
      logger.log(1, `recording FUSE operations to ${tracePath}`);
    }
    const ops = new LessfsFuseOps({ engine, control, gate, logger, space, caller: fuseCaller, request: fuseRequest, trace, logLevel: config.debug, attrHandoff: config.fuseAttrTable || config.fuseReadTable ? fuseAttrHandoff() : undefined,
      listAttributes: config.fuseAttrTable,
      readHandoff: config.fuseReadTable ? fuseReadHandoff() : undefined,
    });
    lessfsOps = ops;
    if (config.listenPort > 0) {
      mgmt = await ManagementServer.start(new RealNet(), drivers.clock, logger, new FreezeControl(engine, gate, () => ops.drainWrites()), {
        host: config.listenIp,
        port: config.listenPort,
      });
      logger.log(1, `management port listening on ${config.listenIp}:${mgmt.port}`);
    }
    mounted = await mountFuse(mnt, ops.ops(), {
      blockSizeBytes: config.blockSizeBytes,
      attrTimeoutS,
      entryTimeoutS: attrTimeoutS,
      extra,
      fsname: `lessfs:${config.metaPath}`,
    }, (seq) => ops.interrupt(seq));
    logger.log(0, `mounted ${config.metaPath} at ${mnt} (BLKSIZE=${config.blockSizeBytes}, transaction ${engine.txn}${slave ? ', read-only slave' : ''})`);
    if (process.send) {
      process.send({ mounted: true });
      process.disconnect?.();
    }
  } catch (err) {
    space?.stop();
    await mgmt?.close();
    await trace?.close().catch((e: unknown) => logger.log(0, `closing the trace after failed mount: ${(e as Error).message}`));
    await repl?.beforeEngineClose();
    await engine?.close().catch((e: unknown) => logger.log(0, `close after failed mount: ${(e as Error).message}`));
    await repl?.afterEngineClose().catch((e: unknown) => logger.log(0, `closing the replication log after failed mount: ${(e as Error).message}`));
    lock.release();
    // fuse-native keeps the loop alive after a refused mount: exit once the error is reported.
    if (err instanceof MountRefusedError) setTimeout(() => process.exit(EXIT_RUNTIME), 500).unref();
    if (err instanceof FsError || err instanceof CliError) throw err;
    throw new CliError((err as Error).message);
  }
  const eng = engine;
  const fuseOps = lessfsOps as LessfsFuseOps;
  const mnted = mounted;
  const gate = ioGate;
  const replication = repl as ReplicationNode;
  const recorder = trace;
  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = async (why: string, unmount: boolean): Promise<void> => {
      if (stopping) return;
      stopping = true;
      clearInterval(watch);
      logger.log(0, `${why}: unmounting ${mnt}`);
      let code = EXIT_OK;
      space?.stop();
      gate.open(); // a frozen filesystem is defrosted so waiting operations end
      await mgmt?.close().catch((err: unknown) => logger.log(0, `closing the management port: ${(err as Error).message}`));
      try {
        if (unmount) await mnted.unmount();
      } catch (err) {
        logger.log(0, `unmount of ${mnt} failed: ${(err as Error).message}`);
        code = 1;
      }
      try {
        await fuseOps.closeWrites();
        // Every write is stored and recorded now: the trace ends here.
        await recorder?.close().catch((err: unknown) => logger.log(0, `closing the trace ${recorder.path}: ${(err as Error).message}`));
        await replication.beforeEngineClose();
        await eng.close();
        await replication.afterEngineClose();
        logger.log(0, `closed cleanly at transaction ${eng.txn}`);
      } catch (err) {
        logger.log(0, `close failed: ${(err as Error).message}: changes after the last committed transaction (${eng.durableTxn}) are lost; everything an fsync or a commit made durable stays, and the next mount starts from it`);
        code = 1;
      }
      lock.release();
      resolveExit(code);
      // fuse-native's thread may keep the loop alive after unmount.
      setImmediate(() => process.exit(code));
    };
    process.on('SIGINT', () => void stop('SIGINT', true));
    process.on('SIGTERM', () => void stop('SIGTERM', true));
    // fusermount -u by the user ends the FUSE session without telling us.
    const watch = setInterval(() => {
      if (!mountedAt(mnt)) void stop('unmounted externally', false);
    }, 1000);
  });
}
