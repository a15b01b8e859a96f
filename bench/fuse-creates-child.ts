// Child of the fuse section: create COUNT files of SIZE bytes in DIR (which
// must exist and be empty) with fs.promises.writeFile, CONCURRENCY at a time,
// and print `RESULT {"ms":…}`. It runs in its own process because the bench
// process must never touch a FUSE mount synchronously, and so its event loop
// measures only the creates. Every file's content is distinct (a random pool
// with the index stamped in), as small files in a backup are, so a
// deduplicating filesystem cannot collapse them into one block.
//
//   node --import tsx bench/fuse-creates-child.ts '{"dir":…,"count":10000,"sizeBytes":4096,"concurrency":4}'

import { randomFillSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface CreatesChildArgs {
  dir: string;
  count: number;
  sizeBytes: number;
  concurrency: number;
}

export interface CreatesChildResult {
  ms: number;
  count: number;
}

export function fileName(i: number): string {
  return `f${String(i).padStart(6, '0')}`;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '') as CreatesChildArgs;
  if (!(Number.isInteger(a.count) && a.count > 0 && a.count <= 1_000_000)) throw new Error(`bad count ${a.count}`);
  if (!(Number.isInteger(a.sizeBytes) && a.sizeBytes >= 8 && a.sizeBytes <= 1 << 20)) throw new Error(`bad sizeBytes ${a.sizeBytes}`);
  if (!(Number.isInteger(a.concurrency) && a.concurrency >= 1 && a.concurrency <= 64)) throw new Error(`bad concurrency ${a.concurrency}`);
  const pool = Buffer.allocUnsafe(a.sizeBytes * 64);
  randomFillSync(pool);
  const content = (i: number): Buffer => {
    const from = (i % 64) * a.sizeBytes;
    const b = Buffer.from(pool.subarray(from, from + a.sizeBytes));
    b.writeUInt32LE(i, 0);
    b.writeUInt32LE(i, a.sizeBytes - 4);
    return b;
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < a.count) {
      const i = next++;
      await writeFile(join(a.dir, fileName(i)), content(i), { flag: 'wx' });
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: a.concurrency }, worker));
  const ms = performance.now() - t0;
  const result: CreatesChildResult = { ms, count: a.count };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

await main();
