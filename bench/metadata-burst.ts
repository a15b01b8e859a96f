// By hand, not part of `npm run bench`: a burst of metadata changes far
// faster than commits land, through the FUSE handlers in-process (no kernel)
// over the real engine (LMDB, node:fs), at the store's real commit limit
// (STORE_COMMIT_OPS_MAX). C callers at once create N empty files spread over
// directories of 10,000, then unlink them all; prints the commits (reason,
// store operations) and checks that none passed the limit, that no commit
// failed and that a remount finds every name (after the creates) and none
// (after the unlinks). docs/architecture.md, "Limits at scale".
//
//   node --import tsx bench/metadata-burst.ts [FILES] [CALLERS]

import { mkdtempSync, rmSync } from 'node:fs';
import { ControlFiles, REPLICATION_OFF } from '../src/core/control.ts';
import type { Logger } from '../src/core/drivers.ts';
import { FsEngine } from '../src/core/fs/engine.ts';
import { IoGate } from '../src/core/gate.ts';
import { STORE_COMMIT_OPS_MAX } from '../src/core/store-rules.ts';
import { realEngineDrivers } from '../src/real/drivers.ts';
import { LessfsFuseOps } from '../src/real/fuse/ops.ts';
import { formatAndOpen } from './engine-driver.ts';

type AnyOps = Record<string, (...args: unknown[]) => void>;
const PER_DIR = 10_000;

async function main(): Promise<void> {
  const files = Number(process.argv[2] ?? 1_000_000);
  const callers = Number(process.argv[3] ?? 64);
  const dir = mkdtempSync('/tmp/metadata-burst-');
  const commits: Array<{ reason: string; ops: number }> = [];
  const failures: string[] = [];
  const logger: Logger = {
    log: (_level, line) => {
      const m = /commit txn \d+ \(([^)]*)\): (\d+) ops/.exec(line);
      if (m) commits.push({ reason: m[1], ops: Number(m[2]) });
      if (/fail/.test(line)) failures.push(line);
    },
  };
  try {
    // A cache of 4 GiB: only the operation count starts commits (its half is 8M entries).
    const b = await formatAndOpen(dir, 131072, 4 * 2 ** 30);
    await b.engine.close();
    const drivers = realEngineDrivers(logger);
    const options = { ...b.options, commitIntervalMs: 600_000 };
    const phase = async (what: 'create' | 'unlink'): Promise<void> => {
      const engine = await FsEngine.open(drivers, options);
      const control = new ControlFiles(engine, REPLICATION_OFF, { contentTtlMs: 2000, nowMs: () => Date.now() });
      const ops = new LessfsFuseOps({ engine, control, gate: new IoGate(), logger, logLevel: 0 }).ops() as unknown as AnyOps;
      const call = (name: string, ...args: unknown[]): Promise<[number, unknown]> => new Promise((res) => ops[name](...args, (e: number, v: unknown) => res([e, v])));
      if (what === 'create') for (let d = 0; d * PER_DIR < files; d++) await call('mkdir', `/d${d}`, 0o755);
      const from = commits.length;
      const t0 = performance.now();
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < files) {
          const i = next++;
          const p = `/d${Math.floor(i / PER_DIR)}/f${i}`;
          if (what === 'create') {
            const [e, fd] = await call('create', p, 0o100644);
            if (e !== 0) throw new Error(`create ${p}: errno ${e}`);
            await call('release', p, fd);
          } else {
            const [e] = await call('unlink', p);
            if (e !== 0) throw new Error(`unlink ${p}: errno ${e}`);
          }
        }
      };
      await Promise.all(Array.from({ length: callers }, worker));
      const ms = performance.now() - t0;
      await engine.close();
      const mine = commits.slice(from);
      const max = Math.max(...mine.map((c) => c.ops));
      console.log(`${what}: ${files} files by ${callers} callers in ${(ms / 1000).toFixed(1)} s (${Math.round(files / (ms / 1000))}/s); ${mine.length} commits, largest ${max} ops (limit ${STORE_COMMIT_OPS_MAX}):`);
      console.log(`  ${mine.map((c) => `${c.reason}:${c.ops}`).join(' ')}`);
      if (max > STORE_COMMIT_OPS_MAX) throw new Error(`a commit of ${max} ops passed the store's limit`);
      const check = await FsEngine.open(drivers, options);
      for (const i of [0, Math.floor(files / 2), files - 1]) {
        const d = check.lookupIno(1, `d${Math.floor(i / PER_DIR)}`);
        const found = d !== undefined && check.lookupIno(d, `f${i}`) !== undefined;
        if (found !== (what === 'create')) throw new Error(`after the ${what}s a remount ${found ? 'finds' : 'does not find'} f${i}`);
      }
      await check.close();
    };
    await phase('create');
    await phase('unlink');
    if (failures.length > 0) throw new Error(`logged failures:\n${failures.join('\n')}`);
    console.log('ok: no commit past the limit, none failed, a remount found what each phase left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
