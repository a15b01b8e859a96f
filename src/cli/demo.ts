// lessfs-demo up|down|status : the README's quick start. Formats two
// filesystems from the embedded default config under a project-local directory
// (./run), mounts a slave and a master with live replication between them on
// loopback, and shows a file written on the master appearing on the slave, so
// a fresh checkout shows lessfs working in one command.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { defaultConfigText } from '../core/config.ts';
import { mountedAt } from '../real/fuse/mount.ts';
import { CliError, EXIT_OK, parseCommandLine, UsageError, type Command } from './common.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const DEFAULT_DIR = join(ROOT, 'run');

/** Management port of the master; the replication port is +1, the slave's management port +2. */
const PORT_BASE_DEFAULT = 17100;
const COMMAND_TIMEOUT_MS = 60_000;
/** How long `up` waits for the file written on the master to appear on the slave. */
const REPLICATION_WAIT_MS_MAX = 20_000;
/** How long `down` waits for a daemon to commit and exit after its unmount. */
const EXIT_WAIT_MS_MAX = 20_000;
/** A mount that does not answer a lookup within this is reported, not waited on. */
const PROBE_TIMEOUT_MS = 5_000;
const POLL_MS = 200;

const usage = `Usage: lessfs-demo up|down|status [--dir DIR] [--port-base PORT]

  up      format (first time) two lessfs filesystems from the embedded default
          config under DIR (default: ./run in the checkout), mount a slave at
          DIR/slave and a master at DIR/master with live replication between
          them on 127.0.0.1, and show a file written on the master appearing
          on the slave
  down    unmount both (the master first)
  status  show what is mounted and the replication state

  --port-base PORT  ports used when the configs are first written: PORT the
                    master's management port, PORT+1 replication, PORT+2 the
                    slave's management port (default ${PORT_BASE_DEFAULT})
`;

type Role = 'master' | 'slave';

interface Node {
  role: Role;
  cfg: string;
  data: string;
  mnt: string;
  /** Where the daemon logs (lessfs's default as a daemon: META_PATH/lessfs.log). */
  log: string;
}

interface Layout {
  dir: string;
  master: Node;
  slave: Node;
}

function nodeOf(dir: string, role: Role): Node {
  const data = join(dir, `${role}-data`);
  return { role, cfg: join(dir, `${role}.cfg`), data, mnt: join(dir, role), log: join(data, 'mta', 'lessfs.log') };
}

function layout(dir: string): Layout {
  return { dir, master: nodeOf(dir, 'master'), slave: nodeOf(dir, 'slave') };
}

/** A path as the user would type it from the current directory. */
function shown(path: string): string {
  const r = relative(process.cwd(), path);
  return r.length > 0 && !r.startsWith('..') ? r : path;
}

function say(text: string): void {
  process.stdout.write(text);
}

// ---- Configs ---------------------------------------------------------------

/** Set KEY=value: replace its line, or its commented example, or append. */
function setKey(text: string, key: string, value: string | number): string {
  const line = `${key}=${value}`;
  const active = new RegExp(`^${key}=.*$`, 'm');
  if (active.test(text)) return text.replace(active, line);
  const example = new RegExp(`^#${key}=.*$`, 'm');
  if (example.test(text)) return text.replace(example, line);
  return `${text.endsWith('\n') ? text : `${text}\n`}${line}\n`;
}

function configText(l: Layout, role: Role, portBase: number): string {
  const node = l[role];
  // The management ports are moved off lessfs's privileged default (100).
  let text = defaultConfigText(node.data);
  text = setKey(text, 'LISTEN_PORT', role === 'master' ? portBase : portBase + 2);
  text = setKey(text, 'REPLICATION', 'masterslave');
  text = setKey(text, 'REPLICATION_ROLE', role);
  if (role === 'master') {
    text = setKey(text, 'REPLICATION_PARTNER_IP', '127.0.0.1');
    text = setKey(text, 'REPLICATION_PARTNER_PORT', portBase + 1);
  } else {
    text = setKey(text, 'REPLICATION_LISTEN_IP', '127.0.0.1');
    text = setKey(text, 'REPLICATION_LISTEN_PORT', portBase + 1);
  }
  return `# Written by lessfs-demo: the ${role} of the quick start (live replication on 127.0.0.1).\n${text}`;
}

function keyOf(cfgPath: string, key: string): string | undefined {
  return new RegExp(`^\\s*${key}\\s*=\\s*(\\S+)\\s*$`, 'm').exec(readFileSync(cfgPath, 'utf8'))?.[1];
}

function isReplicationConfig(cfgPath: string, role: Role): boolean {
  return keyOf(cfgPath, 'REPLICATION') === 'masterslave' && (keyOf(cfgPath, 'REPLICATION_ROLE') ?? 'master') === role;
}

// ---- Mounts ----------------------------------------------------------------

type MountState = 'mounted' | 'stale' | 'not mounted';

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new CliError(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Mounted and answering, a dead process's stale mount, or nothing. Async only: never block on a FUSE mount. */
async function mountState(mnt: string): Promise<MountState> {
  if (!mountedAt(mnt)) return 'not mounted';
  try {
    // A name nobody looked up reaches the daemon (cached attributes would not).
    await withTimeout(fsp.stat(join(mnt, `.lessfs-demo-probe-${process.pid}-${Date.now()}`)), PROBE_TIMEOUT_MS, `the filesystem at ${mnt}`);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') return 'mounted';
    if (code === 'ENOTCONN' || code === 'ECONNABORTED' || code === 'EIO') return 'stale';
    throw err;
  }
  return 'mounted';
}

function commandError(what: string, err: unknown): CliError {
  const e = err as Error & { stdout?: string; stderr?: string };
  const out = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim();
  return new CliError(`${what} failed: ${out.length > 0 ? out : e.message}`);
}

async function ourCommand(script: string, args: string[]): Promise<string> {
  try {
    const r = await run(process.execPath, [join(ROOT, 'bin', script), ...args], { timeout: COMMAND_TIMEOUT_MS });
    return r.stdout + r.stderr;
  } catch (err) {
    throw commandError(`${script.replace(/\.js$/, '')} ${args.join(' ')}`, err);
  }
}

function lockPid(node: Node): number | undefined {
  const lock = join(node.data, 'mta', 'lessfs.lock');
  if (!existsSync(lock)) return undefined;
  const pid = Number(readFileSync(lock, 'utf8').split(' ')[0]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** Format (first time) and mount one filesystem, unless it is mounted already. */
async function bringUp(l: Layout, node: Node, portBase: number): Promise<void> {
  const state = await mountState(node.mnt);
  // Only an unmounted mount point is touched synchronously (a stale one answers ENOTCONN).
  if (state === 'not mounted') mkdirSync(node.mnt, { recursive: true });
  if (!existsSync(node.cfg)) {
    writeFileSync(node.cfg, configText(l, node.role, portBase));
    say(`wrote ${shown(node.cfg)} from the embedded default config (${node.role})\n`);
  }
  if (!existsSync(join(node.data, 'mta', 'data.mdb'))) {
    say(await ourCommand('mklessfs.js', ['-f', '-c', node.cfg]));
  }
  if (state === 'mounted') {
    say(`${shown(node.mnt)} is already mounted (${node.role})\n`);
    return;
  }
  // lessfs clears a stale mount (left by a killed daemon) itself.
  if (state === 'stale') say(`${shown(node.mnt)} holds a stale mount of a dead ${node.role}: remounting\n`);
  say(await ourCommand('lessfs.js', [node.cfg, node.mnt]));
}

/** A filesystem from the demo before it replicated (run/master alone): moved aside, never deleted. */
async function moveAsideOldLayout(l: Layout): Promise<void> {
  if (!existsSync(l.master.cfg) || isReplicationConfig(l.master.cfg, 'master')) return;
  if ((await mountState(l.master.mnt)) === 'mounted') {
    throw new CliError(`${shown(l.master.mnt)} is mounted from ${shown(l.master.cfg)}, a configuration without replication (an older lessfs-demo): run 'npm run demo -- down' first`);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const old = join(l.dir, `old-${stamp}`);
  mkdirSync(old);
  for (const name of ['master.cfg', 'master-data']) {
    if (existsSync(join(l.dir, name))) renameSync(join(l.dir, name), join(old, name));
  }
  say(`${shown(l.dir)} held a filesystem without replication (an older lessfs-demo): moved to ${shown(old)}\n`);
}

/** Poll the slave (async reads: it is a FUSE mount) until path holds exactly want. */
async function waitOnSlave(path: string, want: Buffer): Promise<number> {
  const t0 = performance.now();
  let last = 'not there yet';
  while (performance.now() - t0 < REPLICATION_WAIT_MS_MAX) {
    try {
      const got = await withTimeout(fsp.readFile(path), PROBE_TIMEOUT_MS, `reading ${path}`);
      if (got.equals(want)) return performance.now() - t0;
      last = `different bytes (${got.length} bytes, want ${want.length})`;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'ENOENT') last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new CliError(`${path} did not appear on the slave within ${REPLICATION_WAIT_MS_MAX / 1000} s (last: ${last})`);
}

async function up(l: Layout, portBase: number): Promise<void> {
  mkdirSync(l.dir, { recursive: true });
  await moveAsideOldLayout(l);
  // The slave first: the master connects to it (and would retry with backoff).
  await bringUp(l, l.slave, portBase);
  await bringUp(l, l.master, portBase);
  const replPort = keyOf(l.master.cfg, 'REPLICATION_PARTNER_PORT') ?? '?';

  const name = 'hello.txt';
  const onMaster = join(l.master.mnt, name);
  const onSlave = join(l.slave.mnt, name);
  const text = Buffer.from(`hello from lessfs-ts, written on the master at ${new Date().toISOString()}\n`);
  await fsp.writeFile(onMaster, text);
  say(`wrote ${shown(onMaster)} on the master: ${text.toString('utf8').trim()}\n`);
  let waitedMs: number;
  try {
    waitedMs = await waitOnSlave(onSlave, text);
  } catch (err) {
    const status = await fsp.readFile(join(l.master.mnt, '.lessfs', 'replication', 'status'), 'utf8').catch((e: unknown) => `(unreadable: ${(e as Error).message})\n`);
    throw new CliError(`${(err as Error).message}\nmaster replication status:\n${status}logs: ${shown(l.master.log)}, ${shown(l.slave.log)}`);
  }
  say(`${shown(onSlave)} appeared on the slave after ${(waitedMs / 1000).toFixed(1)} s, byte for byte the same\n`);

  const downCommand = l.dir === DEFAULT_DIR ? 'npm run demo -- down' : `npm run demo -- down --dir ${shown(l.dir)}`;
  const m = shown(l.master.mnt);
  const s = shown(l.slave.mnt);
  say(
    `\nlessfs is mounted at ${l.master.mnt} (master) and ${l.slave.mnt} (read-only slave),\n` +
      `replicating live over 127.0.0.1:${replPort}. Files written under ${m} appear under ${s}.\n` +
      `  check:        cat ${s}/${name}\n` +
      `  replication:  cat ${m}/.lessfs/replication/status   (and ${s}/.lessfs/replication/status)\n` +
      `  statistics:   cat ${m}/.lessfs/lessfs_stats\n` +
      `  configs:      ${shown(l.master.cfg)}, ${shown(l.slave.cfg)}\n` +
      `  logs:         ${shown(l.master.log)}, ${shown(l.slave.log)}\n` +
      `  unmount:      ${downCommand}   (or: fusermount -u ${m}; fusermount -u ${s})\n`,
  );
}

/** Unmount one filesystem and wait for its daemon to commit and exit. */
async function takeDown(node: Node): Promise<string | undefined> {
  const state = await mountState(node.mnt).catch((err: unknown) => `unknown (${(err as Error).message})`);
  if (state === 'not mounted') {
    say(`${shown(node.mnt)} is not mounted (${node.role})\n`);
    return undefined;
  }
  const pid = lockPid(node);
  try {
    await run('fusermount', ['-u', node.mnt], { timeout: COMMAND_TIMEOUT_MS });
  } catch (err) {
    if (state !== 'stale') return commandError(`fusermount -u ${node.mnt}`, err).message;
    // A dead daemon's mount: detach it lazily.
    await run('fusermount', ['-uz', node.mnt], { timeout: COMMAND_TIMEOUT_MS }).catch((e: unknown) => {
      throw commandError(`fusermount -uz ${node.mnt}`, e);
    });
  }
  // The daemon commits and releases its lock after the unmount.
  const t0 = performance.now();
  while (pid !== undefined && pidAlive(pid) && performance.now() - t0 < EXIT_WAIT_MS_MAX) await new Promise((r) => setTimeout(r, 100));
  if (pid !== undefined && pidAlive(pid)) return `the ${node.role} daemon (pid ${pid}) is still running ${EXIT_WAIT_MS_MAX / 1000} s after its unmount; see ${node.log}`;
  say(`unmounted ${shown(node.mnt)} (${node.role})\n`);
  return undefined;
}

async function down(l: Layout): Promise<void> {
  // The master first: it stops sending before its slave goes away.
  const problems: string[] = [];
  for (const node of [l.master, l.slave]) {
    const problem = await takeDown(node);
    if (problem !== undefined) problems.push(problem);
  }
  if (problems.length > 0) throw new CliError(problems.join('\n'));
}

async function status(l: Layout): Promise<void> {
  for (const node of [l.master, l.slave]) {
    const m = mountedAt(node.mnt);
    const state = m ? await mountState(node.mnt).catch((err: unknown) => `not answering (${(err as Error).message})`) : 'not mounted';
    say(m && state === 'mounted' ? `${node.mnt}: mounted (${m.fstype}), ${node.role}\n` : `${node.mnt}: ${state === 'stale' ? 'stale mount (its daemon died)' : state}, ${node.role}\n`);
    const lock = join(node.data, 'mta', 'lessfs.lock');
    if (existsSync(lock)) say(`  lock: ${readFileSync(lock, 'utf8').trim()}\n`);
    if (state !== 'mounted') continue;
    const text = await withTimeout(fsp.readFile(join(node.mnt, '.lessfs', 'replication', 'status'), 'utf8'), PROBE_TIMEOUT_MS, `${node.mnt}/.lessfs/replication/status`);
    say(text.split('\n').filter((line) => line.length > 0).map((line) => `  ${line}\n`).join(''));
  }
}

export const demo: Command = {
  name: 'lessfs-demo',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandLine(argv, {
      options: { dir: { type: 'string' }, 'port-base': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(usage);
      return EXIT_OK;
    }
    const portBase = values['port-base'] === undefined ? PORT_BASE_DEFAULT : Number(values['port-base']);
    if (!Number.isInteger(portBase) || portBase < 1024 || portBase > 65533) {
      throw new UsageError(`--port-base ${values['port-base']}: expected an integer between 1024 and 65533`);
    }
    const l = layout(resolve(values.dir ?? DEFAULT_DIR));
    const verb = positionals[0];
    if (positionals.length !== 1) throw new UsageError('expected one of: up, down, status');
    if (verb === 'up') await up(l, portBase);
    else if (verb === 'down') await down(l);
    else if (verb === 'status') await status(l);
    else throw new UsageError(`unknown command '${verb}' (expected up, down or status)`);
    return EXIT_OK;
  },
};
