// replogtool as users run it: real log files from a real batch master (LMDB,
// node:fs), dumped and applied by the command in a child process.

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LessfsConfig } from '../../src/core/config.ts';
import type { Logger } from '../../src/core/drivers.ts';
import { FsEngine } from '../../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../../src/core/fs/options.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { encodeRecordFrame, FRAME_TYPE } from '../../src/core/replication/frames.ts';
import { scanLiveLog, validateRotatedFile } from '../../src/core/replication/log-file.ts';
import { ReplicationNode } from '../../src/core/replication/node.ts';
import { SlaveApplier, type SlaveReplicationMeta } from '../../src/core/replication/slave.ts';
import { realEngineDrivers } from '../../src/real/drivers.ts';
import { acquireLock } from '../../src/real/lock.ts';
import { nodePrimitives } from '../../src/real/primitives.ts';
import { fsDigest, poolData } from '../../src/sim/workload.ts';
import type { LogDump } from '../../src/cli/replogtool.ts';
import { makeBatchNode } from '../support/batch-nodes.ts';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const MASTER_FS_ID = 'replogtool-test-master';
const BLOCK = 4096;

/** Compressible (lz4 keeps it) and distinct in every block. */
function textData(lengthBytes: number, salt: string): Uint8Array {
  let s = '';
  for (let i = 0; s.length < lengthBytes; i++) s += `${salt} line ${i} of a compressible file\n`;
  return new TextEncoder().encode(s.slice(0, lengthBytes));
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function replogtool(...args: string[]): Promise<Result> {
  try {
    const r = await execFileAsync(process.execPath, [join(ROOT, 'bin/replogtool.js'), ...args], { cwd: ROOT, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number | string; stdout: string; stderr: string; killed?: boolean };
    if (typeof e.code !== 'number') throw err; // spawn failure or timeout: not an exit status
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const quiet: Logger = { log: () => undefined };

/** A batch node as users make one (COMPRESSION=lz4: the dumps show its codec). */
const makeNode = (dir: string, role: 'master' | 'slave', fsId: string): ReturnType<typeof makeBatchNode> =>
  makeBatchNode(dir, role, fsId, BLOCK, [`# replogtool test ${role}`, 'COMPRESSION=lz4']);

async function slavePosition(config: LessfsConfig): Promise<SlaveReplicationMeta> {
  const drivers = realEngineDrivers(quiet);
  const engine = await FsEngine.open(drivers, engineOptionsFromConfig(config));
  try {
    return new SlaveApplier(engine, drivers.primitives, quiet).position();
  } finally {
    await engine.close();
  }
}

function flipByte(bytes: Uint8Array, offset: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[offset] ^= 0x40;
  return out;
}

describe('replogtool', () => {
  let dir: string;
  let master: { cfgPath: string; config: LessfsConfig };
  let slave: { cfgPath: string; config: LessfsConfig };
  /** replog.dta-1..3 in the master's BLOCKDATA_PATH. */
  const rotated: string[] = [];
  let livePath: string;
  /** The master's tree and txn when replog.dta-3 was rotated. */
  let digestAtRotation3: string;
  let txnAtRotation3: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lessfs-replogtool-'));
    master = await makeNode(join(dir, 'master'), 'master', MASTER_FS_ID);
    slave = await makeNode(join(dir, 'slave'), 'slave', 'replogtool-test-slave');
    const drivers = realEngineDrivers(quiet);
    const repl = new ReplicationNode(master.config, drivers);
    const engine = await FsEngine.open(drivers, engineOptionsFromConfig(master.config), (e) => repl.attach(e));
    repl.start(engine);
    try {
      const fs = new PathFs(engine);
      fs.mkdir('/d');
      fs.create('/d/a');
      fs.create('/d/b');
      await fs.write('/d/a', 0, textData(20_000, 'a'));
      await fs.write('/d/b', 0, textData(20_000, 'a')); // deduplicates: block map records only
      await engine.commit();
      await repl.control.rotate!();
      fs.create('/c');
      await fs.write('/c', 0, poolData(BLOCK, 2, 9_000));
      fs.unlink('/d/a');
      fs.symlink('/d/b', '/s');
      await repl.control.rotate!();
      fs.mkdir('/e');
      fs.create('/e/f');
      await fs.write('/e/f', 0, poolData(BLOCK, 3, 50_000));
      fs.rename('/c', '/e/c');
      await repl.control.rotate!();
      digestAtRotation3 = await fsDigest(fs);
      txnAtRotation3 = engine.txn;
      // Left in the live log: never rotated.
      fs.create('/live');
      await fs.write('/live', 0, poolData(BLOCK, 4, 6_000));
      await engine.commit();
    } finally {
      await repl.beforeEngineClose();
      await engine.close();
      await repl.afterEngineClose();
    }
    for (const n of [1, 2, 3]) rotated.push(join(master.config.blockDataPath, `replog.dta-${n}`));
    livePath = join(master.config.blockDataPath, 'replog.dta');
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('dumps rotated and live logs as text and JSON; refuses damaged files and a wrong -b', async () => {
    const bytes1 = readFileSync(rotated[0]);
    const bytes2 = readFileSync(rotated[1]);
    const v1 = validateRotatedFile(nodePrimitives, bytes1, { fsId: MASTER_FS_ID, blockSizeBytes: BLOCK });
    const v2 = validateRotatedFile(nodePrimitives, bytes2, { fsId: MASTER_FS_ID, blockSizeBytes: BLOCK });
    // A live log whose last transaction lost its COMMIT and whose last write was
    // torn: a record of the next txn, then a frame header promising more than follows.
    const liveDir = join(dir, 'live');
    mkdirSync(liveDir);
    const liveBytes = readFileSync(livePath);
    const liveScan = scanLiveLog(nodePrimitives, liveBytes);
    const longKey = new Uint8Array(40).fill(0xab);
    const orphanRecord = encodeRecordFrame(nodePrimitives, liveScan.lastTxn + 1, { type: FRAME_TYPE.KV, kv: { table: 'dirent', key: longKey, value: undefined } });
    const torn = Uint8Array.from([0, 0, 0, 50, 1, 2, 3]);
    const tornAt = liveBytes.length + orphanRecord.length;
    const liveCopy = join(liveDir, 'replog.dta');
    writeFileSync(liveCopy, Buffer.concat([liveBytes, orphanRecord, torn]));
    const cutDir = join(dir, 'cut');
    mkdirSync(cutDir);
    const cut = join(cutDir, 'replog.dta-1');
    writeFileSync(cut, bytes1.subarray(0, Math.floor(bytes1.length / 2)));
    const badDir = join(dir, 'bad');
    mkdirSync(badDir);
    const bad = join(badDir, 'replog.dta-2');
    writeFileSync(bad, flipByte(bytes2, Math.floor(bytes2.length / 2)));
    // replog.dta-1 renamed for another sequence: a slave refuses it (ESEQUENCE), so must the dump.
    const renamedDir = join(dir, 'renamed');
    mkdirSync(renamedDir);
    const renamed = join(renamedDir, 'replog.dta-7');
    writeFileSync(renamed, bytes1);
    // Cut inside the header: before its fs id length is readable (byte 12), and after.
    const headerCutDir = join(dir, 'header-cut');
    mkdirSync(headerCutDir);
    const shortCut = join(headerCutDir, 'replog.dta-1');
    writeFileSync(shortCut, bytes1.subarray(0, 10));
    const headerCut = join(headerCutDir, 'replog.dta-2');
    writeFileSync(headerCut, bytes1.subarray(0, 40));

    const [text, json, liveText, liveJson, truncated, corrupt, wrongSize, misnamed, misnamedJson, cutShort, cutHeader] = await Promise.all([
      replogtool('-r', rotated[0], '-b', String(BLOCK)),
      replogtool('-r', rotated[1], '-b', '4K', '--json'),
      replogtool('-r', liveCopy, '-b', String(BLOCK)),
      replogtool('--replog', liveCopy, '--blksize', String(BLOCK), '--json'),
      replogtool('-r', cut, '-b', String(BLOCK)),
      replogtool('-r', bad, '-b', String(BLOCK)),
      replogtool('-r', rotated[0], '-b', '8192'),
      replogtool('-r', renamed, '-b', String(BLOCK)),
      replogtool('-r', renamed, '-b', String(BLOCK), '--json'),
      replogtool('-r', shortCut, '-b', String(BLOCK)),
      replogtool('-r', headerCut, '-b', String(BLOCK)),
    ]);

    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`${rotated[0]}: rotated replication log, ${bytes1.length} bytes`);
    expect(lines[1]).toMatch(new RegExp(`^header: magic LESSFSRL version 1, fs id ${MASTER_FS_ID}, block size 4096, sequence 1, first txn 1, \\d+ bytes$`));
    const txnLines = lines.filter((l) => l.startsWith('txn '));
    expect(txnLines.length).toBe(v1.transactions.length);
    expect(txnLines[0]).toMatch(/^txn 1 at offset \d+: \d+ records, nextIno \d+, master time \d{4}-\d\d-\d\dT/);
    expect(text.stdout).toMatch(/\n {2}KV {4}inode {5}put {4}key [0-9a-f]+ \(\d+ bytes\), value \d+ bytes\n/);
    expect(text.stdout).toMatch(/\n {2}KV {4}dirent {4}put/);
    expect(text.stdout).toMatch(/\n {2}BLOCK key [0-9a-f]{64} \(32 bytes\), codec lz4, raw 4096 bytes, stored \d+ bytes\n/);
    const kv1 = v1.transactions.reduce((n, t) => n + t.decoded.filter((r) => r.type === 1).length, 0);
    const blocks1 = v1.transactions.flatMap((t) => t.decoded.filter((r) => r.type === 2));
    const stored1 = blocks1.reduce((n, r) => n + (r.type === 2 ? r.block.stored.length : 0), 0);
    const frames1 = v1.trailer.frameCount;
    expect(lines).toContain(`trailer: last txn ${v1.trailer.lastTxn}, ${frames1} frames, file CRC-32 0x${v1.trailer.fileCrc32.toString(16).padStart(8, '0')}`);
    expect(lines.at(-1)).toBe(
      `totals: ${v1.transactions.length} transactions, ${kv1} KV records, ${blocks1.length} BLOCK records, ${stored1} block bytes stored, ${bytes1.length} file bytes`,
    );
    // 20000 bytes are 5 distinct blocks; /d/b deduplicates against /d/a.
    expect(blocks1.length).toBe(5);

    expect(json.code).toBe(0);
    const d = JSON.parse(json.stdout) as LogDump;
    expect(d.kind).toBe('rotated');
    expect(d.header).toMatchObject({ magic: 'LESSFSRL', formatVersion: 1, fsId: MASTER_FS_ID, blockSizeBytes: BLOCK, sequence: 2, firstTxn: v2.header.firstTxn });
    expect(d.transactions.map((t) => t.txn)).toEqual(v2.transactions.map((t) => t.txn));
    expect(d.transactions.map((t) => t.records.length)).toEqual(v2.transactions.map((t) => t.records.length));
    expect(d.trailer).toEqual({ lastTxn: v2.trailer.lastTxn, frameCount: v2.trailer.frameCount, fileCrc32: `0x${v2.trailer.fileCrc32.toString(16).padStart(8, '0')}` });
    expect(d.live).toBeNull();
    const recs = d.transactions.flatMap((t) => t.records);
    expect(d.totals).toEqual({
      transactions: v2.transactions.length,
      kvRecords: recs.filter((r) => r.type === 'KV').length,
      blockRecords: recs.filter((r) => r.type === 'BLOCK').length,
      blockStoredBytes: recs.reduce((n, r) => n + (r.type === 'BLOCK' ? r.storedBytes : 0), 0),
      fileBytes: bytes2.length,
    });
    expect(recs.some((r) => r.type === 'KV' && r.op === 'delete')).toBe(true); // the unlink of /d/a
    expect(recs.some((r) => r.type === 'KV' && r.table === 'symlink')).toBe(true);
    for (const r of recs) expect(Object.keys(r).sort()).not.toContain('value');

    expect(liveText.code).toBe(0);
    expect(liveText.stdout).toContain(`${liveCopy}: live replication log (no trailer), ${tornAt + torn.length} bytes`);
    expect(liveText.stdout).toMatch(/\nheader: magic LESSFSRL version 1, fs id replogtool-test-master, block size 4096, sequence 4, first txn \d+/);
    expect(liveText.stdout).toContain(`\nuncommitted: txn ${liveScan.lastTxn + 1} has 1 records and no COMMIT`);
    expect(liveText.stdout).toContain(`\n  KV    dirent    delete key ${'ab'.repeat(32)}... (40 bytes)\n`);
    expect(liveText.stdout).toContain(`torn tail: ${torn.length} bytes from offset ${tornAt} (ETRUNCATED:`);
    expect(liveText.stdout).toMatch(/\nlive log: [1-9]\d* committed transactions/);
    expect(liveText.stdout).not.toContain('trailer:');
    expect(liveJson.code).toBe(0);
    const l = JSON.parse(liveJson.stdout) as LogDump;
    expect(l.kind).toBe('live');
    expect(l.trailer).toBeNull();
    expect(l.header?.sequence).toBe(4);
    expect(l.header?.firstTxn).toBe(txnAtRotation3 + 1);
    expect(l.transactions[0].txn).toBe(txnAtRotation3 + 1);
    expect(l.transactions.map((t) => t.txn)).toEqual(liveScan.transactions.map((t) => t.txn));
    expect(l.live).toMatchObject({ committedEndBytes: liveBytes.length, lastTxn: liveScan.lastTxn, tail: { code: 'ETRUNCATED', offsetBytes: tornAt, bytes: torn.length } });
    expect(l.live?.uncommitted).toEqual({
      txn: liveScan.lastTxn + 1,
      records: [{ type: 'KV', offsetBytes: liveBytes.length, table: 'dirent', keyHex: 'ab'.repeat(40), keyBytes: 40, op: 'delete', valueBytes: null }],
    });

    expect(truncated.code).toBe(1);
    expect(truncated.stdout).toBe('');
    expect(truncated.stderr).toContain(`replogtool: ETRUNCATED: ${cut}: `);
    expect(corrupt.code).toBe(1);
    expect(corrupt.stderr).toContain(`replogtool: ECRC: ${bad}: `);
    expect(wrongSize.code).toBe(1);
    expect(wrongSize.stderr).toContain(`EBLKSIZE: ${rotated[0]}: written with block size 4096, expected 8192`);
    for (const r of [misnamed, misnamedJson]) {
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`replogtool: ESEQUENCE: ${renamed}: the file is named for sequence 7 but its header says sequence 1 (renamed by hand?); a slave takes it only as replog.dta-1\n`);
    }
    // The header is 36 bytes plus the fs id: the figure is exact once the fs id's length is read.
    const headerBytes = 36 + MASTER_FS_ID.length;
    expect(headerBytes).toBe(v1.header.sizeBytes);
    expect(cutShort.code).toBe(1);
    expect(cutShort.stderr).toContain(`ETRUNCATED: ${shortCut}: file of 10 bytes ends inside its header (a header is 36 bytes plus its fs id, at least 37)`);
    expect(cutHeader.code).toBe(1);
    expect(cutHeader.stderr).toContain(`ETRUNCATED: ${headerCut}: file of 40 bytes ends inside its header (this one needs ${headerBytes} bytes: 36 plus its ${MASTER_FS_ID.length}-byte fs id)`);
  });

  it('refuses bad usage with exit 2 and the usage text; -h prints it', async () => {
    const runs = await Promise.all([
      replogtool('-h'),
      replogtool(),
      replogtool('-r', rotated[0]),
      replogtool('-r', rotated[0], '-b', '5000'),
      replogtool('-r', rotated[0], '-b', '4096', '-c', slave.cfgPath),
      replogtool('-r', rotated[0], '--bogus'),
      replogtool('-r', rotated[0], '-c', slave.cfgPath, '--json'),
    ]);
    const [help, none, neither, badSize, both, unknown, jsonApply] = runs;
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: replogtool -r FILE -b BLKSIZE [--json]');
    expect(help.stdout).toContain('replogtool -r FILE -c CONFIG');
    for (const r of runs.slice(1)) {
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('Usage: replogtool');
    }
    expect(none.stderr).toContain('no log file given (expected -r FILE)');
    expect(neither.stderr).toContain('nothing to do: give -b BLKSIZE');
    expect(badSize.stderr).toContain('-b 5000 is invalid: expected');
    expect(badSize.stderr).toContain('a power of two between 4096 and 131072');
    expect(both.stderr).toContain('-b and -c exclude each other');
    expect(unknown.stderr).toContain("Unknown option '--bogus'");
    expect(jsonApply.stderr).toContain('--json goes with -b');
  });

  it('applies files to an unmounted slave once, in order, and refuses what it must', async () => {
    const notSlave = await replogtool('-r', rotated[0], '-c', master.cfgPath);
    expect(notSlave.code).toBe(1);
    expect(notSlave.stderr).toContain("-c needs a replication slave's configuration");
    expect(notSlave.stderr).toContain('REPLICATION_ROLE=master');

    const lock = acquireLock(slave.config.metaPath, 'test holds the slave');
    try {
      const locked = await replogtool('-r', rotated[0], '-c', slave.cfgPath);
      expect(locked.code).toBe(1);
      expect(locked.stderr).toContain(`the filesystem in ${slave.config.metaPath} is in use by process ${process.pid} (test holds the slave)`);
    } finally {
      lock.release();
    }

    const first = await replogtool('-r', rotated[0], '-c', slave.cfgPath);
    expect(first.code).toBe(0);
    expect(first.stderr).toContain('slave adopted master filesystem id replogtool-test-master');
    const m = /^applied (\S+): (\d+) transactions \(txns 1\.\.(\d+)\), (\d+) bytes; slave now at txn (\d+), sequence 1\n$/.exec(first.stdout);
    expect(m, first.stdout).not.toBeNull();
    const after1 = Number(m![3]);
    expect(m![1]).toBe(rotated[0]);
    expect(Number(m![5])).toBe(after1);

    // A flipped byte, a file out of order and the live log: refused, nothing applied.
    const badDir = join(dir, 'bad-apply');
    mkdirSync(badDir);
    const bad = join(badDir, 'replog.dta-2');
    const bytes2 = readFileSync(rotated[1]);
    writeFileSync(bad, flipByte(bytes2, bytes2.length - 40));
    const corrupt = await replogtool('-r', bad, '-c', slave.cfgPath);
    expect(corrupt.code).toBe(1);
    expect(corrupt.stderr).toContain(`replogtool: ECRC: ${bad}: `);
    expect(corrupt.stderr).toContain('nothing was applied');
    const gap = await replogtool('-r', rotated[2], '-c', slave.cfgPath);
    expect(gap.code).toBe(1);
    expect(gap.stderr).toContain('ESEQUENCE');
    expect(gap.stderr).toContain('needs replog.dta-2 next');
    const renamedAsNext = join(badDir, 'replog.dta-3');
    writeFileSync(renamedAsNext, bytes2);
    const misnamed = await replogtool('-r', renamedAsNext, '-c', slave.cfgPath);
    expect(misnamed.code).toBe(1);
    expect(misnamed.stderr).toContain(`\nreplogtool: ESEQUENCE: ${renamedAsNext}: the file is named for sequence 3 but its header says sequence 2 (renamed by hand?); a slave takes it only as replog.dta-2; nothing was applied\n`);
    const live = await replogtool('-r', livePath, '-c', slave.cfgPath);
    expect(live.code).toBe(1);
    expect(live.stderr).toContain(`ETRUNCATED: ${livePath}: `);
    expect(await slavePosition(slave.config)).toEqual({ role: 'slave', fsId: MASTER_FS_ID, txn: after1, sequence: 1 });

    const second = await replogtool('-r', rotated[1], '-c', slave.cfgPath);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(new RegExp(`^applied \\S+: \\d+ transactions \\(txns ${after1 + 1}\\.\\.\\d+\\), \\d+ bytes; slave now at txn \\d+, sequence 2\\n$`));
    const third = await replogtool('-r', rotated[2], '-c', slave.cfgPath);
    expect(third.code).toBe(0);
    expect(third.stdout).toContain(`slave now at txn ${txnAtRotation3}, sequence 3\n`);
    const again = await replogtool('-r', rotated[1], '-c', slave.cfgPath);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`skipped ${rotated[1]}: already applied (slave at txn ${txnAtRotation3}, sequence 3)\n`);

    const drivers = realEngineDrivers(quiet);
    const engine = await FsEngine.open(drivers, engineOptionsFromConfig(slave.config));
    try {
      expect(await fsDigest(new PathFs(engine))).toBe(digestAtRotation3);
      expect(Buffer.compare(await new PathFs(engine).readFile('/e/f'), poolData(BLOCK, 3, 50_000))).toBe(0);
      expect(new SlaveApplier(engine, drivers.primitives, quiet).position()).toEqual({ role: 'slave', fsId: MASTER_FS_ID, txn: txnAtRotation3, sequence: 3 });
    } finally {
      await engine.close();
    }
  });
});
