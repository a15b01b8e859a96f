// lessfs-demo up|down|status : the README's quick start. Formats a filesystem
// from the embedded default config under a project-local directory (./run)
// and mounts it, so a fresh checkout shows lessfs working in one command.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { defaultConfigText } from '../core/config.ts';
import { mountedAt } from '../real/fuse/mount.ts';
import { EXIT_OK, parseCommandLine, UsageError, type Command } from './common.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');

const usage = `Usage: lessfs-demo up|down|status [--dir DIR]

  up      format (first time) and mount a lessfs filesystem from the embedded
          default config under DIR (default: ./run in the checkout)
  down    unmount it
  status  show what is mounted
`;

interface Layout {
  dir: string;
  cfg: string;
  mnt: string;
}

function layout(dir: string): Layout {
  return { dir, cfg: join(dir, 'master.cfg'), mnt: join(dir, 'master') };
}

async function node(script: string, args: string[]): Promise<string> {
  const r = await run(process.execPath, [join(ROOT, 'bin', script), ...args], { timeout: 60_000 });
  return r.stdout + r.stderr;
}

async function up(l: Layout): Promise<void> {
  mkdirSync(l.mnt, { recursive: true });
  if (!existsSync(l.cfg)) {
    // The management port is moved off lessfs's privileged default (100).
    const text = defaultConfigText(join(l.dir, 'master-data')).replace(/^LISTEN_PORT=.*$/m, 'LISTEN_PORT=17100');
    writeFileSync(l.cfg, text);
    process.stdout.write(`wrote ${l.cfg} from the embedded default config\n`);
  }
  if (!existsSync(join(l.dir, 'master-data', 'mta', 'data.mdb'))) {
    process.stdout.write(await node('mklessfs.js', ['-f', '-c', l.cfg]));
  }
  if (mountedAt(l.mnt)) {
    process.stdout.write(`${l.mnt} is already mounted\n`);
  } else {
    process.stdout.write(await node('lessfs.js', [l.cfg, l.mnt]));
  }
  const hello = join(l.mnt, 'hello.txt');
  // Async I/O: this process must never block on a FUSE mount.
  const { writeFile, readFile } = await import('node:fs/promises');
  await writeFile(hello, `hello from lessfs-ts, ${new Date().toISOString()}\n`);
  process.stdout.write(`wrote ${hello}: ${(await readFile(hello, 'utf8')).trim()}\n`);
  process.stdout.write(`\nlessfs is mounted at ${l.mnt}\n  statistics: cat ${l.mnt}/.lessfs/lessfs_stats\n  unmount:    npm run demo -- down   (or: fusermount -u ${l.mnt})\n`);
}

async function down(l: Layout): Promise<void> {
  if (!mountedAt(l.mnt)) {
    process.stdout.write(`${l.mnt} is not mounted\n`);
    return;
  }
  await run('fusermount', ['-u', l.mnt]);
  // The daemon commits and releases its lock after the unmount.
  const lock = join(l.dir, 'master-data', 'mta', 'lessfs.lock');
  for (let i = 0; i < 100 && existsSync(lock); i++) await new Promise((r) => setTimeout(r, 100));
  process.stdout.write(`unmounted ${l.mnt}\n`);
}

function status(l: Layout): void {
  const m = mountedAt(l.mnt);
  process.stdout.write(m ? `${l.mnt}: mounted (${m.fstype})\n` : `${l.mnt}: not mounted\n`);
  const lock = join(l.dir, 'master-data', 'mta', 'lessfs.lock');
  if (existsSync(lock)) process.stdout.write(`lock: ${readFileSync(lock, 'utf8').trim()}\n`);
}

export const demo: Command = {
  name: 'lessfs-demo',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandLine(argv, {
      options: { dir: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(usage);
      return EXIT_OK;
    }
    const l = layout(resolve(values.dir ?? join(ROOT, 'run')));
    const verb = positionals[0];
    if (positionals.length !== 1) throw new UsageError('expected one of: up, down, status');
    if (verb === 'up') await up(l);
    else if (verb === 'down') await down(l);
    else if (verb === 'status') status(l);
    else throw new UsageError(`unknown command '${verb}' (expected up, down or status)`);
    return EXIT_OK;
  },
};

