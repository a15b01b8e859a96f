// The commands as users run them (child processes, LMDB, node:fs): a batch
// master whose replog.dta was deleted is refused by `lessfs` before anything
// is mounted, and says what is missing and what to do; a slave repaired by
// `lessfsck -r` records it, and `replogtool -c` still applies files to it and
// warns each time.

import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LessfsConfig } from '../../src/core/config.ts';
import type { Logger } from '../../src/core/drivers.ts';
import { FsEngine } from '../../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../../src/core/fs/options.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { direntKey, ROOT_INO, T, TABLES } from '../../src/core/fs/schema.ts';
import { ReplicationNode } from '../../src/core/replication/node.ts';
import { SlaveApplier } from '../../src/core/replication/slave.ts';
import { realEngineDrivers } from '../../src/real/drivers.ts';
import { poolData } from '../../src/sim/workload.ts';
import { makeBatchNode } from '../support/batch-nodes.ts';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const BLOCK = 4096;
const quiet: Logger = { log: () => undefined };

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function command(name: string, ...args: string[]): Promise<Result> {
  try {
    const r = await execFileAsync(process.execPath, [join(ROOT, 'bin', `${name}.js`), ...args], { cwd: ROOT, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number | string; stdout: string; stderr: string };
    if (typeof e.code !== 'number') throw err; // spawn failure or timeout: not an exit status
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const makeNode = (dir: string, role: 'master' | 'slave'): ReturnType<typeof makeBatchNode> => makeBatchNode(dir, role, `gaps-cli-${role}`, BLOCK);

const mountedAt = (mnt: string): boolean => readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);

describe('missing log files and slave repairs, through the commands', () => {
  let dir: string;
  let mnt: string;
  let master: { cfgPath: string; config: LessfsConfig };
  let slave: { cfgPath: string; config: LessfsConfig };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lessfs-replog-gaps-'));
    mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    master = await makeNode(join(dir, 'master'), 'master');
    slave = await makeNode(join(dir, 'slave'), 'slave');
    const drivers = realEngineDrivers(quiet);
    const repl = new ReplicationNode(master.config, drivers);
    const engine = await FsEngine.open(drivers, engineOptionsFromConfig(master.config), (e) => repl.attach(e));
    await repl.start(engine);
    try {
      const fs = new PathFs(engine);
      for (const name of ['a', 'b', 'c']) {
        fs.create(`/${name}`);
        await fs.write(`/${name}`, 0, poolData(BLOCK, name.charCodeAt(0), 3 * BLOCK));
        await engine.commit();
        if (name !== 'c') await repl.control.rotate!();
      }
    } finally {
      await repl.beforeEngineClose();
      await engine.close();
      await repl.afterEngineClose();
    }
  });

  afterAll(() => {
    if (mnt && mountedAt(mnt)) execFileSync('fusermount', ['-u', mnt]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lessfsck -r on a slave records the repair; replogtool -c still applies files and warns', async () => {
    const dta = master.config.blockDataPath;
    const first = await command('replogtool', '-r', join(dta, 'replog.dta-1'), '-c', slave.cfgPath);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).not.toMatch(/repaired/);
    // Take /a out of the slave's root directory: a problem lessfsck -r repairs.
    const drivers = realEngineDrivers(quiet);
    const store = await drivers.storeFactory.open({ path: slave.config.metaPath, tables: TABLES, mapSizeBytes: engineOptionsFromConfig(slave.config).lmdbMapSizeBytes });
    await store.commit([{ table: T.dirent, key: direntKey(ROOT_INO, 'a'), value: undefined }], { durable: true });
    await store.close();
    const fsck = await command('lessfsck', '-r', '-c', slave.cfgPath);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    const at = Number(/\(at master txn (\d+)\)/.exec(fsck.stdout)?.[1]);
    expect(at).toBeGreaterThan(0);
    expect(fsck.stdout).toContain(`status shows repaired_at_txn ${at} until it is re-seeded`);

    const second = await command('replogtool', '-r', join(dta, 'replog.dta-2'), '-c', slave.cfgPath);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/^applied .*replog\.dta-2/);
    expect(second.stderr).toContain(`warning: this slave was repaired by lessfsck -r at master txn ${at} and may differ from its master since`);
    const engine = await FsEngine.open(drivers, engineOptionsFromConfig(slave.config));
    try {
      expect(new SlaveApplier(engine, drivers.primitives, quiet).position()).toMatchObject({ sequence: 2, repairedAtTxn: at });
    } finally {
      await engine.close();
    }
  });

  it('lessfs refuses a master whose replog.dta is gone, before mounting, naming it and the option', async () => {
    const help = await command('lessfs', '--help');
    expect(help.stdout).toContain('--accept-replog-gap');
    const live = join(master.config.blockDataPath, 'replog.dta');
    expect(existsSync(live)).toBe(true);
    unlinkSync(live);
    const r = await command('lessfs', master.cfgPath, mnt, '-f');
    expect(mountedAt(mnt)).toBe(false);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/replication log files are missing from .*: replog\.dta \(the live log of sequence 3; txns \d+\.\.\d+\)/);
    expect(r.stderr).toContain('re-seed the slave');
    expect(r.stderr).toContain('mount once with --accept-replog-gap');
    expect(existsSync(live)).toBe(false); // nothing was changed
  });
});
