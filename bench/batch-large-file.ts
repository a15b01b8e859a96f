// By hand, not part of `npm run bench`: a batch master (real drivers, no
// FUSE) creates FILES empty files in directories of 10,000 between two
// rotations, so one rotated log file carries more changes than one store
// commit may (STORE_COMMIT_OPS_MAX); then `replogtool -r FILE -c SLAVE_CFG`
// applies it to a new slave, under /usr/bin/time. Prints the file's size,
// replogtool's time, peak RSS and output, and the slave's commits (from its
// DEBUG=3 log). docs/replication-log.md, "Applying".
//
//   node --import tsx bench/batch-large-file.ts [FILES]

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../src/core/config.ts';
import { FsEngine } from '../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../src/core/fs/options.ts';
import { PathFs } from '../src/core/fs/path-fs.ts';
import { rotatedLogName } from '../src/core/replication/master-log.ts';
import { ReplicationNode } from '../src/core/replication/node.ts';
import { realEngineDrivers } from '../src/real/drivers.ts';
import { REPO_DIR } from './child.ts';

const PER_DIR = 10_000;

function configText(dir: string, role: 'master' | 'slave'): string {
  return [
    'BLKSIZE=131072', `BLOCKDATA_PATH=${join(dir, 'dta')}`, `META_PATH=${join(dir, 'mta')}`, 'CACHESIZE=512', 'COMMIT_INTERVAL=30',
    'LISTEN_PORT=0', 'MIN_SPACE_FREE=0', 'REPLICATION=masterslave', `REPLICATION_ROLE=${role}`, 'REPLICATION_PARTNER_IP=-1',
    'ROTATE_REPLOG_SIZE=0', 'ROTATE_REPLOG_INTERVAL=0', 'DEBUG=3', '',
  ].join('\n');
}

async function format(dir: string, role: 'master' | 'slave'): Promise<string> {
  mkdirSync(join(dir, 'mta'), { recursive: true });
  const cfgPath = join(dir, 'lessfs.cfg');
  writeFileSync(cfgPath, configText(dir, role));
  const { config } = parseConfig(configText(dir, role));
  await FsEngine.format(realEngineDrivers({ log: () => undefined }), engineOptionsFromConfig(config), { force: false, fsId: `burst-${role}` });
  return cfgPath;
}

async function main(): Promise<void> {
  const files = Number(process.argv[2] ?? 600_000);
  const dir = mkdtempSync('/tmp/batch-large-file-');
  try {
    const mDir = join(dir, 'master');
    const sDir = join(dir, 'slave');
    await format(mDir, 'master');
    const slaveCfg = await format(sDir, 'slave');
    const { config } = parseConfig(configText(mDir, 'master'));
    const drivers = realEngineDrivers({ log: () => undefined });
    const repl = new ReplicationNode(config, drivers);
    const engine = await FsEngine.open(drivers, engineOptionsFromConfig(config), (e) => repl.attach(e));
    repl.start(engine);
    let rotated: string;
    try {
      const fs = new PathFs(engine);
      const t0 = performance.now();
      for (let i = 0; i < files; i++) {
        if (i % PER_DIR === 0) fs.mkdir(`/d${i / PER_DIR}`);
        fs.create(`/d${Math.floor(i / PER_DIR)}/f${i}`);
        // A turn of the event loop now and then, as a mount's requests give: commits run.
        if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
      }
      await engine.commit();
      console.log(`master: ${files} creates in ${((performance.now() - t0) / 1000).toFixed(1)} s, txn ${engine.txn}`);
      const log = repl.masterLog;
      if (!log) throw new Error('the master has no replication log');
      const sequence = log.sequence;
      await log.rotate();
      rotated = join(mDir, 'dta', rotatedLogName(sequence));
    } finally {
      await repl.beforeEngineClose();
      await engine.close();
      await repl.afterEngineClose();
    }
    console.log(`${rotatedLogName(1)}: ${(statSync(rotated).size / 1e6).toFixed(1)} MB`);
    const r = spawnSync('/usr/bin/time', ['-f', 'replogtool: %e s, max RSS %M KB', process.execPath, join(REPO_DIR, 'bin/replogtool.js'), '-r', rotated, '-c', slaveCfg], { encoding: 'utf8' });
    const commits = [...r.stderr.matchAll(/commit txn \d+ \(([^)]*)\): (\d+) ops/g)].map((m) => `${m[1]}:${m[2]}`);
    console.log(`replogtool exit ${r.status}; ${r.stdout.trim()}`);
    console.log(`slave commits: ${commits.join(' ')}`);
    console.log(r.stderr.split('\n').filter((l) => !/commit txn/.test(l) && l.trim() !== '').slice(-8).join('\n'));
    if (r.status !== 0) process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
