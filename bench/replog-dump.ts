// By hand, not part of `npm run bench`: writes a rotated replication log of
// about SIZE_MB (a batch master's creates: per file an inode, a dirent and a
// block map put, a BLOCK of 1-4 KiB stored bytes for every fourth file, in
// transactions of 2,000 files; the same bytes every run), then dumps it with
// `replogtool -r FILE -b 4096` and with `--json`, each under /usr/bin/time
// with stdout to /dev/null and then through a pipe. Prints the file's size,
// each dump's time, peak RSS, output size and SHA-256 (equal hashes: equal
// output). REPLOGTOOL=path/to/bin/replogtool.js dumps with another checkout.
// BENCHMARKS.md, "replogtool dump memory".
//
//   node --import tsx bench/replog-dump.ts [SIZE_MB]

import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { encodeTransaction, FRAME_TYPE, type ReplRecord } from '../src/core/replication/frames.ts';
import { LogWriterState } from '../src/core/replication/log-file.ts';
import { nodePrimitives as P } from '../src/real/primitives.ts';
import { REPO_DIR } from './child.ts';

const FILES_PER_TXN = 2000;
const BLOCK_SIZE = 4096;

/** xorshift32: the same file every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

function u64(n: number, extra = 0): Uint8Array {
  const out = new Uint8Array(8 + extra);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

function writeLog(path: string, sizeBytes: number): void {
  const next = rng(7);
  const noise = new Uint8Array(4096);
  for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(next() * 256);
  const { state, headerBytes } = LogWriterState.create(P, { fsId: 'replog-dump-bench', blockSizeBytes: BLOCK_SIZE, sequence: 1, firstTxn: 1 });
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, headerBytes);
    let ino = 2;
    for (let txn = 1; state.sizeBytes < sizeBytes; txn++) {
      const records: ReplRecord[] = [];
      for (let f = 0; f < FILES_PER_TXN; f++, ino++) {
        records.push({ type: FRAME_TYPE.KV, kv: { table: 'inode', key: u64(ino), value: noise.subarray(0, 69) } });
        const name = new TextEncoder().encode(`f${ino}`);
        const dirent = u64(1, name.length);
        dirent.set(name, 8);
        records.push({ type: FRAME_TYPE.KV, kv: { table: 'dirent', key: dirent, value: u64(ino, 1) } });
        records.push({ type: FRAME_TYPE.KV, kv: { table: 'blockmap', key: u64(ino, 8), value: noise.subarray(100, 132) } });
        if (ino % 4 === 0) {
          const at = Math.floor(next() * 2048);
          records.push({ type: FRAME_TYPE.BLOCK, block: { key: noise.subarray(at, at + 32), codec: 2, rawLength: BLOCK_SIZE, stored: noise.subarray(0, 1024 + Math.floor(next() * 3072)) } });
        }
      }
      const frames = encodeTransaction(P, txn, records, { nextIno: ino, timeMs: 1_780_000_000_000 + txn * 1000 });
      for (const frame of frames) writeSync(fd, frame);
      state.appendAll(frames);
    }
    writeSync(fd, state.encodeTrailer());
  } finally {
    closeSync(fd);
  }
}

/** Dumps `name` in `dir` (the name, not the path, is in the output: the same bytes from any directory). */
function dump(replogtool: string, dir: string, name: string, args: string[], viaPipe: boolean): string {
  const cmd = `cd '${dir}' && /usr/bin/time -f '%e s, max RSS %M KB' '${process.execPath}' '${replogtool}' -r ${name} -b ${BLOCK_SIZE} ${args.join(' ')}`;
  const sink = viaPipe ? `| tee >(wc -c >&2) | sha256sum >&2` : `> /dev/null`;
  const r = spawnSync('bash', ['-c', `${cmd} ${sink}`], { encoding: 'utf8' });
  const lines = r.stderr.trim().split('\n');
  return `${args.join(' ') || 'text'} ${viaPipe ? 'to a pipe' : 'to /dev/null'}: ${lines.join('; ')}`;
}

function main(): void {
  const sizeMb = Number(process.argv[2] ?? 500);
  const replogtool = process.env.REPLOGTOOL ?? join(REPO_DIR, 'bin/replogtool.js');
  const dir = mkdtempSync('/tmp/replog-dump-');
  try {
    const name = 'replog.dta-1';
    const path = join(dir, name);
    const t0 = performance.now();
    writeLog(path, sizeMb * 1e6);
    console.log(`${path}: ${statSync(path).size} bytes, written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    for (const args of [[], ['--json']]) {
      for (const viaPipe of [false, true]) console.log(dump(replogtool, dir, name, args, viaPipe));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
