// Real mounts for tests. The `lessfs` command runs as a child process and the
// test process only drives it: a process that calls into its own mount
// synchronously deadlocks (PLATFORM.md, fuse-native). Every mount, child and
// temp dir is tracked so cleanupMounts() can end them even when a test fails:
// SIGTERM, then SIGKILL, then `fusermount -uz` and `umount -l` for what is still
// mounted; a temp dir is removed only once nothing under it is mounted (rm -rf
// through a live mount would delete the filesystem's contents instead).
//
// Rule for callers: touch a mount path only asynchronously (node:fs/promises)
// or from child processes (run()), never with fs.*Sync.

import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CONFIG_KEYS, LESSFS_IGNORED_KEYS } from '../../src/core/config.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const MOUNT_WAIT_MS_MAX = 20_000;
export const STOP_WAIT_MS_MAX = 20_000;
export const KILL_WAIT_MS_MAX = 5_000;
export const RUN_TIMEOUT_MS_DEFAULT = 60_000;
const POLL_MS = 50;
const LOG_TAIL_LINES = 30;

/** lessfs.cfg keys and values (numbers are written as given). */
export type ConfigOverrides = Record<string, string | number>;

/** What every test store starts from; tests override what they exercise. */
export const TEST_CONFIG_DEFAULTS: Readonly<ConfigOverrides> = {
  BLKSIZE: 131072,
  COMPRESSION: 'none',
  COMMIT_INTERVAL: 5,
  CACHESIZE: 64,
  DEBUG: 1,
  LISTEN_PORT: 0,
  // A CI disk that happens to be 90% full must not turn every write into ENOSPC.
  MIN_SPACE_FREE: 0,
};

// ---- Registry: everything that cleanupMounts() must end. ------------------

const children = new Set<ChildProcess>();
const mountPoints = new Set<string>();
const tempDirs = new Set<string>();

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

// Last resort when the test process itself goes away (a crashed worker, a
// timeout): kill what we started and detach its mounts. Lazy unmount does not
// wait on the filesystem, so it cannot hang here.
process.on('exit', () => {
  for (const c of children) if (alive(c) && c.pid) process.kill(c.pid, 'SIGKILL');
  for (const m of mountPoints) if (isMounted(m)) spawnSync('fusermount', ['-uz', m], { timeout: 5_000 });
});

// ---- /proc/self/mountinfo --------------------------------------------------

interface MountEntry {
  id: number;
  point: string;
  fstype: string;
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Entries of this process's mount table (reads /proc, never the mount). */
export function mountEntries(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line.length === 0) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (f.length < 5 || dash < 0) throw new Error(`unexpected /proc/self/mountinfo line: ${line}`);
    out.push({ id: Number(f[0]), point: unescapeMountPath(f[4]), fstype: f[dash + 1] });
  }
  return out;
}

export function mountsAt(mnt: string): MountEntry[] {
  const target = resolve(mnt);
  return mountEntries().filter((e) => e.point === target);
}

export function isMounted(mnt: string): boolean {
  return mountsAt(mnt).length > 0;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- Child processes -------------------------------------------------------

/** The environment for our commands: no stray lessfs.cfg keys (DEBUG, ...) leak in. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of CONFIG_KEYS) delete env[k.name];
  for (const k of LESSFS_IGNORED_KEYS) delete env[k];
  return { ...env, ...extra };
}

export interface RunResult {
  /** Exit code, or -1 when killed by a signal (timeout). */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
  cwd?: string;
  input?: string;
}

/** Run a command to completion (bounded), tracked for cleanup. Never rejects on a non-zero exit. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const t0 = performance.now();
  const timeoutMs = options.timeoutMs ?? RUN_TIMEOUT_MS_DEFAULT;
  return new Promise((resolveRun) => {
    const child = execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', env: cleanEnv(options.env), cwd: options.cwd, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        children.delete(child);
        const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals | null }) | null;
        if (e && typeof e.code === 'string') {
          // Spawn failure (ENOENT...): a broken test setup, not a result.
          resolveRun({ code: -1, signal: null, stdout, stderr: `${stderr}\nspawn ${cmd} failed: ${e.message}`, ms: performance.now() - t0 });
          return;
        }
        const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        resolveRun({ code, signal: e?.signal ?? null, stdout, stderr, ms: performance.now() - t0 });
      },
    );
    children.add(child);
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** run(), but rejects with the output when the command does not exit 0. */
export async function runOk(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}${r.signal ? ` (${r.signal})` : ''}\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-2000)}`);
  }
  return r;
}

/** A long-running helper process (e.g. a writer loop), killed by cleanupMounts() if still alive. */
export function spawnTracked(cmd: string, args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: () => string;
  stderr: () => string;
} {
  const child = spawn(cmd, args, { env: cleanEnv(options.env), cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.on('close', (code, signal) => {
      children.delete(child);
      res({ code, signal });
    });
    child.on('error', (e) => {
      err += `\nspawn ${cmd} failed: ${e.message}`;
    });
  });
  return { child, exited, stdout: () => out, stderr: () => err };
}

export type CliName = 'lessfs' | 'mklessfs' | 'lessfsck' | 'replogtool';

/** One of our commands (bin/NAME.js) to completion. */
export function cli(name: CliName, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [join(ROOT, 'bin', `${name}.js`), ...args], options);
}

// ---- Stores ----------------------------------------------------------------

export interface Store {
  /** The temp dir holding everything below (removed by cleanupMounts()). */
  readonly dir: string;
  readonly cfgPath: string;
  readonly mnt: string;
  readonly dataPath: string;
  readonly metaPath: string;
  /** The settings currently written to cfgPath. */
  readonly config: Readonly<ConfigOverrides>;
  /** Rewrite lessfs.cfg with these keys changed. */
  writeConfig(overrides: ConfigOverrides): void;
}

export interface StoreOptions {
  config?: ConfigOverrides;
  /** Run mklessfs -f (default true). */
  format?: boolean;
}

/** A temp dir with dta/, mta/, mnt/ and lessfs.cfg, formatted unless told otherwise. */
export async function createStore(options: StoreOptions = {}): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'lessfs-mount-'));
  tempDirs.add(dir);
  const dataPath = join(dir, 'dta');
  const metaPath = join(dir, 'mta');
  const mnt = join(dir, 'mnt');
  for (const d of [dataPath, metaPath, mnt]) mkdirSync(d);
  const cfgPath = join(dir, 'lessfs.cfg');
  let config: ConfigOverrides = { ...TEST_CONFIG_DEFAULTS, ...options.config, BLOCKDATA_PATH: dataPath, META_PATH: metaPath };
  const write = (): void => {
    const lines = Object.entries(config).map(([k, v]) => `${k}=${v}`);
    writeFileSync(cfgPath, `# written by test/support/mount.ts\n${lines.join('\n')}\n`);
  };
  write();
  const store: Store = {
    dir,
    cfgPath,
    mnt,
    dataPath,
    metaPath,
    get config() {
      return config;
    },
    writeConfig(overrides) {
      config = { ...config, ...overrides };
      write();
    },
  };
  if (options.format !== false) await runOk(process.execPath, [join(ROOT, 'bin', 'mklessfs.js'), '-f', '-c', cfgPath], { timeoutMs: 30_000 });
  return store;
}

// ---- Mounts ----------------------------------------------------------------

interface Run {
  child: ChildProcess;
  logPath: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** lessfs said its mount is up (IPC message { mounted: true }, as its daemon mode uses). */
  saidMounted: boolean;
}

let runCounter = 0;

function spawnLessfs(store: Store, mnt: string, args: string[], env: Record<string, string>): Run {
  // No fs call on mnt here: it may hold a stale mount (ENOTCONN) for lessfs to clear.
  const logPath = join(store.dir, `lessfs-run-${++runCounter}.log`);
  appendFileSync(logPath, '');
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    // Spawned before anything touches the mount, and from a process that never
    // mounts: nothing here inherits /dev/fuse.
    child = spawn(process.execPath, [join(ROOT, 'bin', 'lessfs.js'), store.cfgPath, mnt, '-f', ...args], {
      env: cleanEnv(env),
      stdio: ['ignore', fd, fd, 'ipc'],
    });
  } finally {
    closeSync(fd);
  }
  children.add(child);
  mountPoints.add(resolve(mnt));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      res({ code, signal });
    });
    child.on('error', (e) => appendFileSync(logPath, `\n[test] spawn failed: ${e.message}\n`));
  });
  const r: Run = { child, logPath, exit, saidMounted: false };
  // A mount point's id in mountinfo is recycled at once after the stale mount
  // is detached, so only lessfs itself can say that *its* mount is up.
  child.on('message', (msg) => {
    if ((msg as { mounted?: unknown }).mounted === true) r.saidMounted = true;
  });
  return r;
}

/** Where a process and its threads wait (kernel wchan), for hang diagnostics. */
function processState(pid: number | undefined): string {
  if (pid === undefined) return 'not spawned';
  const read = (p: string): string => {
    try {
      return readFileSync(p, 'utf8').trim();
    } catch (err) {
      return `(${(err as { code?: string }).code ?? 'unreadable'})`;
    }
  };
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch (err) {
    return `pid ${pid}: ${(err as { code?: string }).code ?? 'gone'}`;
  }
  const threads = tasks.map((t) => `${read(`/proc/${pid}/task/${t}/comm`)}:${read(`/proc/${pid}/task/${t}/wchan`)}`);
  return `pid ${pid} state ${read(`/proc/${pid}/stat`).split(' ')[2] ?? '?'} threads [${threads.join(', ')}]`;
}

function logTail(text: string): string {
  return text.trim().split('\n').slice(-LOG_TAIL_LINES).join('\n');
}

async function waitExit(r: Run, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((res) => { timer = setTimeout(() => res(undefined), timeoutMs); });
  const result = await Promise.race([r.exit, timeout]);
  clearTimeout(timer);
  return result;
}

/** Wait until lessfs says it mounted (then check /proc) or exits, bounded. */
async function waitMounted(r: Run, mnt: string, timeoutMs: number): Promise<{ mounted: true } | { mounted: false; code: number | null; signal: NodeJS.Signals | null }> {
  const deadline = performance.now() + timeoutMs;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void r.exit.then((e) => { exited = e; });
  while (performance.now() < deadline) {
    if (r.saidMounted) {
      if (!mountsAt(mnt).some((e) => e.fstype.startsWith('fuse'))) throw new Error(`lessfs said it mounted ${mnt} but /proc/self/mountinfo has no FUSE mount there`);
      return { mounted: true };
    }
    if (exited) return { mounted: false, ...exited };
    await sleep(POLL_MS);
  }
  throw new Error(`lessfs did not mount ${mnt} within ${timeoutMs} ms; ${processState(r.child.pid)}; log:\n${logTail(readFileSync(r.logPath, 'utf8'))}`);
}

export interface StartOptions {
  /** Keys of lessfs.cfg for a new store (ignored when store is given). */
  config?: ConfigOverrides;
  /** Mount an existing store instead of formatting a new one. */
  store?: Store;
  /** Extra arguments of lessfs (e.g. ['-o', 'ro']). */
  args?: string[];
  /** Extra environment of the lessfs process. */
  env?: Record<string, string>;
  mountTimeoutMs?: number;
}

/** A running `lessfs CFG MNT -f`. */
export class LessfsMount {
  private current: Run;
  private readonly runs: Run[] = [];

  private constructor(
    readonly store: Store,
    private readonly args: string[],
    private readonly env: Record<string, string>,
    private readonly mountTimeoutMs: number,
    first: Run,
  ) {
    this.current = first;
    this.runs.push(first);
  }

  static async start(options: StartOptions = {}): Promise<LessfsMount> {
    const store = options.store ?? (await createStore({ config: options.config }));
    const args = options.args ?? [];
    const env = options.env ?? {};
    const timeoutMs = options.mountTimeoutMs ?? MOUNT_WAIT_MS_MAX;
    const first = spawnLessfs(store, store.mnt, args, env);
    const m = new LessfsMount(store, args, env, timeoutMs, first);
    await m.awaitMount(first);
    return m;
  }

  get dir(): string { return this.store.dir; }
  get cfgPath(): string { return this.store.cfgPath; }
  get mnt(): string { return this.store.mnt; }
  get dataPath(): string { return this.store.dataPath; }
  get metaPath(): string { return this.store.metaPath; }
  /** Pid of the current lessfs process. */
  get pid(): number {
    const pid = this.current.child.pid;
    if (pid === undefined) throw new Error('lessfs was not spawned');
    return pid;
  }
  get running(): boolean {
    return alive(this.current.child);
  }

  /** A path inside the mount. */
  path(...parts: string[]): string {
    return join(this.store.mnt, ...parts);
  }

  private async awaitMount(r: Run): Promise<void> {
    const w = await waitMounted(r, this.store.mnt, this.mountTimeoutMs);
    if (!w.mounted) {
      throw new Error(`lessfs exited (code ${w.code}, signal ${w.signal}) before mounting ${this.store.mnt}; log:\n${logTail(readFileSync(r.logPath, 'utf8'))}`);
    }
  }

  /** SIGTERM, wait for exit 0, and check the mount is gone. */
  async stop(): Promise<void> {
    const r = this.current;
    if (alive(r.child)) r.child.kill('SIGTERM');
    const e = await waitExit(r, STOP_WAIT_MS_MAX);
    if (!e) {
      r.child.kill('SIGKILL');
      throw new Error(`lessfs (pid ${r.child.pid}) did not exit within ${STOP_WAIT_MS_MAX} ms of SIGTERM; log:\n${logTail(this.logText())}`);
    }
    if (e.code !== 0) throw new Error(`lessfs exited with code ${e.code} signal ${e.signal} on SIGTERM; log:\n${logTail(this.logText())}`);
    if (isMounted(this.store.mnt)) throw new Error(`${this.store.mnt} is still mounted after lessfs exited`);
  }

  /** Wait (bounded) for lessfs to exit by itself, e.g. after `fusermount -u`. */
  async waitExit(timeoutMs = STOP_WAIT_MS_MAX): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const e = await waitExit(this.current, timeoutMs);
    if (!e) throw new Error(`lessfs (pid ${this.current.child.pid}) did not exit within ${timeoutMs} ms; log:\n${logTail(this.currentLogText())}`);
    return e;
  }

  /** SIGKILL: the mount stays behind, stale ("Transport endpoint is not connected"). */
  async kill9(): Promise<void> {
    const r = this.current;
    if (alive(r.child)) r.child.kill('SIGKILL');
    const e = await waitExit(r, KILL_WAIT_MS_MAX);
    if (!e) throw new Error(`lessfs (pid ${r.child.pid}) did not die within ${KILL_WAIT_MS_MAX} ms of SIGKILL`);
  }

  /** Mount the same store again after stop() or kill9() (a stale mount is left for lessfs to clear). */
  async restart(): Promise<void> {
    if (alive(this.current.child)) throw new Error(`restart: lessfs (pid ${this.current.child.pid}) is still running; stop() or kill9() first`);
    const r = spawnLessfs(this.store, this.store.mnt, this.args, this.env);
    this.current = r;
    this.runs.push(r);
    await this.awaitMount(r);
  }

  /** stderr of every run of this mount, oldest first. */
  logText(): string {
    return this.runs.map((r) => readFileSync(r.logPath, 'utf8')).join('');
  }

  /** stderr of the current (latest) run. */
  currentLogText(): string {
    return readFileSync(this.current.logPath, 'utf8');
  }
}

export function startMount(options: StartOptions = {}): Promise<LessfsMount> {
  return LessfsMount.start(options);
}

/**
 * Run `lessfs CFG MNT -f` expecting it to refuse to mount: resolves with its exit
 * code and output. If it mounts after all, it is stopped and this rejects.
 */
export async function expectMountFailure(store: Store, options: { mnt?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<{ code: number | null; log: string }> {
  const mnt = options.mnt ?? store.mnt;
  const r = spawnLessfs(store, mnt, [], options.env ?? {});
  const w = await waitMounted(r, mnt, options.timeoutMs ?? MOUNT_WAIT_MS_MAX);
  const log = readFileSync(r.logPath, 'utf8');
  if (w.mounted) {
    r.child.kill('SIGTERM');
    await waitExit(r, STOP_WAIT_MS_MAX);
    throw new Error(`lessfs mounted ${mnt} but was expected to refuse; log:\n${logTail(log)}`);
  }
  return { code: w.code, log };
}

// ---- Cleanup ---------------------------------------------------------------

async function waitGone(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (alive(child) && performance.now() < deadline) await sleep(POLL_MS);
  return !alive(child);
}

/**
 * End every tracked process and mount and remove the temp dirs. Helpers are
 * killed first (they may hold files open in a mount, which makes a clean
 * unmount fail), then lessfs gets SIGTERM to unmount cleanly, then SIGKILL;
 * whatever is still mounted is detached. Rejects if anything could not be
 * cleaned, after trying everything.
 */
export async function cleanupMounts(): Promise<void> {
  const problems: string[] = [];
  const list = [...children];
  const isLessfs = (c: ChildProcess): boolean => c.spawnargs.some((a) => a.endsWith(join('bin', 'lessfs.js')));
  for (const c of list.filter((c) => !isLessfs(c))) if (alive(c)) c.kill('SIGKILL');
  for (const c of list.filter((c) => !isLessfs(c))) if (!(await waitGone(c, KILL_WAIT_MS_MAX))) problems.push(`helper pid ${c.pid} survived SIGKILL`);
  const daemons = list.filter(isLessfs);
  for (const c of daemons) if (alive(c)) c.kill('SIGTERM');
  for (const c of daemons) {
    if (await waitGone(c, 10_000)) continue;
    c.kill('SIGKILL');
    if (!(await waitGone(c, KILL_WAIT_MS_MAX))) problems.push(`lessfs pid ${c.pid} survived SIGKILL`);
  }
  // A FUSE mount under one of our temp dirs that no tracked mount made (a
  // command run by cli() that mounted and died) is detached too.
  for (const e of mountEntries()) {
    if (e.fstype.startsWith('fuse') && [...tempDirs].some((d) => e.point.startsWith(`${d}/`))) mountPoints.add(e.point);
  }
  for (const m of mountPoints) {
    if (!isMounted(m)) continue;
    const a = await run('fusermount', ['-uz', m], { timeoutMs: 10_000 });
    if (isMounted(m)) {
      const b = await run('umount', ['-l', m], { timeoutMs: 10_000 });
      if (isMounted(m)) problems.push(`${m} is still mounted (fusermount: ${a.stderr.trim()}; umount -l: ${b.stderr.trim()})`);
    }
  }
  for (const m of [...mountPoints]) if (!isMounted(m)) mountPoints.delete(m);
  for (const dir of [...tempDirs]) {
    const busy = [...mountPoints].filter((m) => m === dir || m.startsWith(`${dir}/`));
    if (busy.length > 0) {
      problems.push(`not removing ${dir}: ${busy.join(', ')} still mounted`);
      continue;
    }
    await rm(dir, { recursive: true, force: true });
    if (existsSync(dir)) problems.push(`could not remove ${dir}`);
    else tempDirs.delete(dir);
  }
  for (const c of children) if (alive(c)) problems.push(`pid ${c.pid} (${c.spawnargs.join(' ').slice(0, 80)}) still running`);
  if (problems.length > 0) throw new Error(`cleanupMounts: ${problems.join('; ')}`);
}

/** The afterAll of a file's one mount: stop it (it must exit cleanly), then end whatever else the tests left. */
export async function stopThenCleanup(m: LessfsMount | undefined): Promise<void> {
  try {
    if (m?.running) await m.stop();
  } finally {
    await cleanupMounts();
  }
}

/** A temp dir on the local disk (not a mount), removed by cleanupMounts(). */
export function tempDir(prefix = 'lessfs-src-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

// ---- Small async helpers for tests on a mount ------------------------------

/** sha256 of a file, streamed (works on a mount: async reads only). */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The errno code a promise rejects with, or 'OK' when it resolves. */
export async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string') throw err;
    return code;
  }
}

/** Apparent size in bytes of everything under dir (du -sb; dir must not be a mount). */
export async function duBytes(dir: string): Promise<number> {
  const r = await runOk('du', ['-sb', dir], { timeoutMs: 30_000 });
  const n = Number(r.stdout.split(/\s/)[0]);
  if (!Number.isSafeInteger(n)) throw new Error(`du -sb ${dir}: unexpected output '${r.stdout}'`);
  return n;
}
