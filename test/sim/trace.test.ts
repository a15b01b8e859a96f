// FUSE traces (issue 6, item 5) on the simulator side: the parser's errors
// (each message), its warnings (a killed mount's cut line, no end marker),
// handle-to-path mapping through renames, hard links and unlinks, skipped
// counts, the fingerprint -> bytes expansion, the trace as a schedule (the
// seed's steps with the trace's ops; JSON, validation, shrinking),
// determinism of replay-trace, a passing replay under every fault profile
// (ending with the recorded tree unless a master fault fired), and the CLI
// (report, failure capsule that `replay` reproduces, usage errors).

import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fingerprintData, pieceBytes, tracePieces } from '../../src/core/trace-format.ts';
import { FAULT_PROFILES } from '../../src/sim/campaign.ts';
import { ModelFs } from '../../src/sim/model.ts';
import { executeSchedule, generateSchedule } from '../../src/sim/campaign.ts';
import { validateSchedule, type Schedule } from '../../src/sim/schedule.ts';
import { shrinkSchedule } from '../../src/sim/shrink.ts';
import { masterFaults, replayTrace, traceSchedule } from '../../src/sim/trace-replay.ts';
import { convertTrace, loadTrace, parseTrace, TraceError } from '../../src/sim/trace.ts';
import { applyToModel } from '../../src/sim/workload.ts';
import { simCli as cli, tempDirs } from '../support/sim-cli.ts';

const temp = tempDirs('lessfs-trace-test-');
const tempDir = temp.make;
afterAll(temp.removeAll);

const HEADER = { lessfs_trace: 1, blksize: 4096, started: '2026-01-01T00:00:00.000Z', root_entries: 0, fingerprint: 'hmac-sha256-64' };
const FP_A = '0123456789abcdef';
const FP_B = 'fedcba9876543210';
const FP_C = '00000000deadbeef';

/** Trace text from objects (the header first), with an end marker unless told otherwise. */
function traceText(ops: object[], opts: { header?: object; end?: boolean } = {}): string {
  let t = 0;
  const lines = [JSON.stringify(opts.header ?? HEADER), ...ops.map((o) => JSON.stringify({ t: (t += 1), ...o }))];
  if (opts.end !== false) lines.push(JSON.stringify({ t: t + 1, event: 'end', ops: ops.length }));
  return `${lines.join('\n')}\n`;
}

/** A small workload: a directory, two files with the same content (dedup), an overwrite, renames, links. */
const WORKLOAD: object[] = [
  { op: 'mkdir', path: '/d', mode: 0o755, r: 0 },
  { op: 'create', path: '/d/a', mode: 0o100644, fh: 1, r: 0 },
  { op: 'write', fh: 1, off: 0, len: 4096, fp: [FP_A], r: 0 },
  { op: 'write', fh: 1, off: 4096, len: 4096, fp: [FP_B], r: 0 },
  { op: 'write', fh: 1, off: 8192, len: 1808, fp: [FP_C], r: 0 },
  { op: 'release', fh: 1, r: 0 },
  { op: 'create', path: '/d/b', mode: 0o100644, fh: 2, r: 0 },
  { op: 'write', fh: 2, off: 0, len: 8192, fp: [FP_A, FP_B], r: 0 },
  { op: 'write', fh: 2, off: 8192, len: 1808, fp: [FP_C], r: 0 },
  { op: 'release', fh: 2, r: 0 },
  { op: 'open', path: '/d/a', flags: 2, fh: 3, r: 0 },
  { op: 'write', fh: 3, off: 3000, len: 2000, fp: [FP_B, '0'], r: 0 },
  { op: 'release', fh: 3, r: 0 },
  { op: 'truncate', path: '/d/b', size: 5000, r: 0 },
  { op: 'rename', path: '/d/b', to: '/c', r: 0 },
  { op: 'symlink', target: 'd/a', path: '/s', r: 0 },
  { op: 'link', path: '/d/a', to: '/h', r: 0 },
  { op: 'chmod', path: '/h', mode: 0o600, r: 0 },
  { op: 'unlink', path: '/nope', r: 'ENOENT' },
  { op: 'open', path: '/h', flags: 0, fh: 4, r: 0 },
  { op: 'read', fh: 4, off: 0, len: 4096, r: 0 },
  { op: 'fsync', fh: 4, r: 0 },
  { op: 'release', fh: 4, r: 0 },
  { op: 'readdir', path: '/d', r: 0 },
  { op: 'fsyncdir', path: '/d', r: 0 },
];

const WANT_TREE = [
  ['/c', 'file size=5000 nlink=1'],
  ['/d', 'dir nlink=2'],
  ['/d/a', 'file size=10000 nlink=2'],
  ['/h', 'file size=10000 nlink=2'],
  ['/s', 'symlink -> d/a'],
];

/** The parse error of a trace (fails the test when it parses). */
function traceError(text: string, name = 't.trace'): string {
  try {
    loadTrace(text, name);
  } catch (err) {
    expect(err).toBeInstanceOf(TraceError);
    expect((err as TraceError).code).toBe('ETRACE');
    return (err as Error).message;
  }
  throw new Error('expected a TraceError');
}

describe('trace parser', () => {
  it('reads a good trace: ops, handle ops, skips, no warnings', () => {
    const t = loadTrace(traceText(WORKLOAD), 'good');
    expect(t.warnings).toEqual([]);
    expect(t.blockSizeBytes).toBe(4096);
    expect(t.recordedOps).toBe(WORKLOAD.length);
    expect(t.handleOps).toBe(6); // 2 open + 4 release (create counts as an op)
    expect(t.skipped).toEqual({ 'chmod (no simulator equivalent)': 1, 'failed when recorded': 1 });
    expect(t.divergent).toBe(0);
    expect(t.ops.length + t.handleOps + 2).toBe(WORKLOAD.length);
    expect(t.ops.map((o) => o.op)).toEqual([
      'mkdir', 'create', 'write', 'write', 'write', 'create', 'write', 'write', 'write', 'truncate', 'rename', 'symlink', 'link', 'read', 'fsync', 'readdir', 'fsync',
    ]);
    // Handles became paths; the read went through the hard link it was opened by.
    expect(t.ops[13]).toEqual({ op: 'read', path: '/h', offsetBytes: 0, lengthBytes: 4096 });
    expect(t.ops[7]).toEqual({ op: 'write', path: '/d/b', offsetBytes: 8192, lengthBytes: 1808, pool: 0, fingerprints: [FP_C] });
    expect(t.opLines[0]).toBe(2);
    const m = new ModelFs();
    for (const op of t.ops) expect(applyToModel(m, op, 4096)).not.toHaveProperty('err');
    expect([...m.listing()]).toEqual(WANT_TREE);
  });

  it('rejects bad lines with the line, the field and what was expected', () => {
    const cases: Array<[string, string | RegExp]> = [
      ['', 't.trace line 1: the trace is empty (expected the header line {"lessfs_trace":1,...})'],
      [traceText([], { header: { hello: 1 } }), 't.trace line 1: expected the trace header (an object with "lessfs_trace": 1), got {"hello":1}'],
      [traceText([], { header: { ...HEADER, lessfs_trace: 2 } }), 't.trace line 1: lessfs_trace: expected 1 (the trace version this lessfs-sim reads), got 2'],
      [traceText([], { header: { ...HEADER, blksize: 5000 } }), "t.trace line 1: blksize: expected a power of two between 4096 and 131072 (the recorded filesystem's BLKSIZE), got 5000"],
      [traceText([], { header: { ...HEADER, root_entries: -1 } }), 't.trace line 1: root_entries: expected an integer >= 0 (entries in / when recording started), got -1'],
      [traceText([], { header: { ...HEADER, fingerprint: 'sha1' } }), 't.trace line 1: fingerprint: expected "hmac-sha256-64", got "sha1"'],
      [`${JSON.stringify(HEADER)}\n{"t":1,"op":"mkdir"\n{"t":2,"event":"end","ops":0}\n`, /^t\.trace line 2: not JSON \(.+\)$/],
      [`${JSON.stringify(HEADER)}\n\n{"t":2,"event":"end","ops":0}\n`, 't.trace line 2: empty line (expected one JSON object per line)'],
      [traceText([{ op: 'frob', path: '/x', r: 0 }]), 't.trace line 2: op: expected one of create, open, release, read, write, ftruncate, fsync, truncate, mknod, mkdir, symlink, link, rename, chmod, chown, unlink, rmdir, readdir, readlink, fsyncdir, utimens, got "frob"'],
      [traceText([{ op: 'mkdir', mode: 493, r: 0 }]), 't.trace line 2: path: missing (a mkdir line has path, mode; expected an absolute path (a string starting with /))'],
      [traceText([{ op: 'mkdir', path: 'rel/x', mode: 493, r: 0 }]), 't.trace line 2: path: expected an absolute path (a string starting with /), got "rel/x"'],
      [traceText([{ op: 'truncate', path: '/x', size: -5, r: 0 }]), 't.trace line 2: size: expected an integer >= 0, got -5'],
      [traceText([{ op: 'release', fh: 0, r: 0 }]), 't.trace line 2: fh: expected a handle number (an integer >= 1), got 0'],
      [traceText([{ op: 'unlink', path: '/x', r: 2 }]), 't.trace line 2: r: expected 0 or an errno name such as "ENOENT", got 2'],
      [traceText([{ op: 'open', path: '/x', flags: 0, r: 0 }]), 't.trace line 2: fh: missing (a successful open returns a handle; expected a handle number (an integer >= 1))'],
      [traceText([{ op: 'fsync', fh: 1, path: '/x', r: 0 }]), 't.trace line 2: fh: expected either fh or path on an fsync line, not both or neither'],
      [
        traceText([{ op: 'create', path: '/x', mode: 0, fh: 1, r: 0 }, { op: 'write', fh: 1, off: 3000, len: 2000, fp: [FP_A], r: 0 }]),
        't.trace line 3: fp: expected 2 fingerprints (one per BLKSIZE-aligned piece of 2000 bytes at offset 3000, BLKSIZE 4096), got 1',
      ],
      [
        traceText([{ op: 'create', path: '/x', mode: 0, fh: 1, r: 0 }, { op: 'write', fh: 1, off: 0, len: 10, fp: ['secret-bytes'], r: 0 }]),
        't.trace line 3: fp[0]: expected 16 hex digits or "0" (an all-zero piece), got "secret-bytes"',
      ],
      [
        `${JSON.stringify(HEADER)}\n{"t":5,"op":"mkdir","path":"/a","mode":0,"r":0}\n{"t":4,"op":"mkdir","path":"/b","mode":0,"r":0}\n`,
        "t.trace line 3: t: expected the time offset in ms, a number >= 5 (the previous line's), got 4",
      ],
      [`${traceText([])}{"t":9,"op":"mkdir","path":"/a","mode":0,"r":0}\n`, 't.trace line 3: a line after the end marker of line 2 (expected nothing after it)'],
      [traceText([{ t: 1, event: 'finished', ops: 0 }]), 't.trace line 2: event: expected "end" or "stopped", got "finished"'],
      [traceText([{ op: 'write', fh: 7, off: 0, len: 1, fp: [FP_A], r: 0 }]), 't.trace line 2: fh: write of handle 7, which is not open (expected the fh of an earlier open or create, not yet released)'],
      [traceText([{ op: 'release', fh: 3, r: 0 }]), 't.trace line 2: fh: release of handle 3, which is not open (expected the fh of an earlier open or create, not yet released)'],
      [
        traceText([{ op: 'create', path: '/x', mode: 0, fh: 1, r: 0 }, { op: 'open', path: '/x', flags: 0, fh: 1, r: 0 }]),
        't.trace line 3: fh: handle 1 opened again while open since line 2 (expected a release first)',
      ],
    ];
    for (const [text, message] of cases) {
      if (typeof message === 'string') expect(traceError(text)).toBe(message);
      else expect(traceError(text)).toMatch(message);
    }
  });

  it('tolerates a last line cut short by a killed mount, with warnings', () => {
    const full = traceText(WORKLOAD, { end: false });
    const cut = full.slice(0, full.length - 25); // inside the last line, no newline at the end
    const p = parseTrace(cut, 'killed');
    expect(p.entries.length).toBe(WORKLOAD.length - 1);
    expect(p.warnings).toEqual([
      `killed line ${WORKLOAD.length + 1}: the last line is cut short (the recording mount was killed?); ignored`,
      'killed: no end marker: the recording mount did not unmount cleanly (killed?), or the trace was cut',
    ]);
    // A broken line that is not the last one is still an error.
    expect(traceError(`${cut}\n{"t":99,"event":"end","ops":1}\n`)).toMatch(/^t\.trace line 26: not JSON/);
  });

  it('warns about an early stop, a non-empty start and operations that fail on an empty filesystem', () => {
    const text = traceText([{ op: 'unlink', path: '/old', r: 0 }, { op: 'mkdir', path: '/n', mode: 0, r: 0 }], {
      header: { ...HEADER, root_entries: 3 },
      end: false,
    });
    const stopped = `${text}${JSON.stringify({ t: 10, event: 'stopped', ops: 2, reason: 'disk too slow' })}\n`;
    const t = loadTrace(stopped, 'w');
    expect(t.divergent).toBe(1);
    expect(t.warnings).toEqual([
      'w line 4: recording stopped early: disk too slow',
      'w: recording began on a filesystem with 3 entries in /; the replay starts empty, so operations on what was there fail',
      'w: 1 operations succeeded when recorded but fail on an empty filesystem replaying the trace (first: line 2: {"op":"unlink","path":"/old"} succeeded when recorded, fails with ENOENT here)',
    ]);
  });

  it('maps handles to paths through directory renames, hard links and unlinks; counts what it skips', () => {
    const t = loadTrace(
      traceText([
        { op: 'mkdir', path: '/d', mode: 0, r: 0 },
        { op: 'create', path: '/d/f', mode: 0, fh: 1, r: 0 },
        { op: 'rename', path: '/d', to: '/e', r: 0 }, // the open file moves with its directory
        { op: 'write', fh: 1, off: 0, len: 5, fp: [FP_A], r: 0 },
        { op: 'link', path: '/e/f', to: '/g', r: 0 },
        { op: 'unlink', path: '/e/f', r: 0 }, // still reachable as /g
        { op: 'ftruncate', fh: 1, size: 3, r: 0 },
        { op: 'unlink', path: '/g', r: 0 }, // no name left (hard_remove)
        { op: 'write', fh: 1, off: 0, len: 5, fp: [FP_A], r: 0 },
        { op: 'fsync', fh: 1, r: 0 },
        { op: 'release', fh: 1, r: 0 },
        { op: 'mknod', path: '/fifo', mode: 0o10644, r: 0 },
        { op: 'mknod', path: '/plain', mode: 0o100644, r: 0 },
        { op: 'chown', path: '/plain', uid: -1, gid: 5, r: 0 },
        { op: 'utimens', path: '/plain', r: 0 },
        { op: 'write', fh: 9, off: 0, len: 5, fp: [FP_A], r: 'EBADF' },
      ]),
      'h',
    );
    expect(t.ops.filter((o) => o.op === 'write' || o.op === 'truncate')).toEqual([
      { op: 'write', path: '/e/f', offsetBytes: 0, lengthBytes: 5, pool: 0, fingerprints: [FP_A] },
      { op: 'truncate', path: '/g', sizeBytes: 3 },
    ]);
    expect(t.ops.at(-1)).toEqual({ op: 'create', path: '/plain' });
    expect(t.skipped).toEqual({
      'write of an unlinked open file': 1,
      'fsync of an unlinked open file': 1,
      'mknod of a device, fifo or socket (no simulator equivalent)': 1,
      'chown (no simulator equivalent)': 1,
      'utimens (no simulator equivalent)': 1,
      'failed when recorded': 1,
    });
    expect(t.divergent).toBe(0);
  });
});

describe('fingerprint expansion', () => {
  it('splits writes into BLKSIZE-aligned pieces', () => {
    expect(tracePieces(0, 8192, 4096)).toEqual([[0, 4096], [4096, 8192]]);
    expect(tracePieces(3000, 2000, 4096)).toEqual([[0, 1096], [1096, 2000]]);
    expect(tracePieces(4096, 10, 4096)).toEqual([[0, 10]]);
    expect(tracePieces(5, 0, 4096)).toEqual([]);
  });

  it('equal fingerprints give equal bytes, different ones different bytes, "0" zeros', () => {
    expect(pieceBytes(FP_A, 4096)).toEqual(pieceBytes(FP_A, 4096));
    expect(pieceBytes(FP_A, 100)).toEqual(pieceBytes(FP_A, 4096).subarray(0, 100));
    expect(Buffer.from(pieceBytes(FP_A, 4096)).equals(Buffer.from(pieceBytes(FP_B, 4096)))).toBe(false);
    // Fingerprints differing in one half only still differ everywhere (both halves seed the stream).
    const x = pieceBytes('0000000000000001', 64);
    const y = pieceBytes('0000000100000001', 64);
    expect(Buffer.from(x).equals(Buffer.from(y))).toBe(false);
    expect(pieceBytes('0', 4096)).toEqual(new Uint8Array(4096));
    // Random-looking: no all-zero piece from a non-zero fingerprint, and many distinct byte values.
    const p = pieceBytes(FP_C, 4096);
    expect(p.some((b) => b !== 0)).toBe(true);
    expect(new Set(p).size).toBeGreaterThan(200);
    expect(() => pieceBytes('xyz', 4)).toThrow(/bad fingerprint 'xyz'/);
  });

  it('a write is its pieces expanded in place, so the same piece content lines up in any file', () => {
    const d = fingerprintData(3000, 2000, [FP_B, '0'], 4096);
    expect(d.subarray(0, 1096)).toEqual(pieceBytes(FP_B, 1096));
    expect(d.subarray(1096)).toEqual(new Uint8Array(904));
    expect(fingerprintData(0, 8192, [FP_A, FP_A], 4096).subarray(4096)).toEqual(pieceBytes(FP_A, 4096));
    expect(() => fingerprintData(0, 8192, [FP_A], 4096)).toThrow(/2 pieces of BLKSIZE 4096, but 1 fingerprints/);
  });
});

describe('replayTrace', () => {
  const trace = loadTrace(traceText(WORKLOAD), 'workload');

  it('is deterministic: the same trace and seed give the same trace hash, another seed another', async () => {
    for (const mode of ['live', 'batch'] as const) {
      const a = await replayTrace(trace, { seed: 11, faults: 'all', mode });
      const b = await replayTrace(trace, { seed: 11, faults: 'all', mode });
      const c = await replayTrace(trace, { seed: 12, faults: 'all', mode });
      expect(a.result.problems).toEqual([]);
      expect(b.result.traceHash).toBe(a.result.traceHash);
      expect(b.result.faultsInjected).toEqual(a.result.faultsInjected);
      expect(c.result.traceHash).not.toBe(a.result.traceHash);
    }
  });

  it('passes under every profile; ends with the recorded tree unless a master fault fired', async () => {
    let rolledBack = 0;
    let recordedTree = 0;
    for (const mode of ['live', 'batch'] as const) {
      for (const faults of FAULT_PROFILES) {
        for (const seed of [1, 2, 3, 4]) {
          const what = `seed ${seed} ${faults} ${mode}`;
          const r = await replayTrace(trace, { seed, faults, mode });
          // The oracle checked the master against the model after every op, every fault and at the end.
          expect(r.result.problems, what).toEqual([]);
          expect(r.result.options.ops).toBe(trace.ops.length + 1); // + the closing commit
          expect(r.finalTree, what).toBeDefined();
          // A master crash or power loss (power/disk/all/swarm) may roll the master back and lose ops:
          // then the run ends at the model's tree, which need not be the recorded one. Without one it must.
          if (masterFaults(r.result) === 0) {
            expect([...(r.finalTree as Map<string, string>)], what).toEqual(WANT_TREE);
            recordedTree++;
          } else if (JSON.stringify([...(r.finalTree as Map<string, string>)]) !== JSON.stringify(WANT_TREE)) rolledBack++;
          if (faults === 'none' || faults === 'net') expect(masterFaults(r.result), what).toBe(0);
        }
      }
    }
    // Both cases happen: most runs end at the recorded tree, and some master fault did lose operations.
    expect(recordedTree).toBeGreaterThan(20);
    expect(rolledBack).toBeGreaterThan(0);
  });

  it('is a schedule: the seed\'s faults, cuts, checks and idle times, with the trace\'s ops in order', () => {
    for (const mode of ['live', 'batch'] as const) {
      const { options, schedule } = traceSchedule(trace, { seed: 3, faults: 'all', mode });
      const seeded = generateSchedule(options);
      expect(schedule.setup).toEqual({ ...seeded.setup, blockSizeBytes: 4096 });
      expect(schedule.steps.map((s) => s.step)).toEqual(seeded.steps.map((s) => s.step));
      expect(schedule.steps.map((s) => (s.step === 'op' ? s.idleMs : -1))).toEqual(seeded.steps.map((s) => (s.step === 'op' ? s.idleMs : -1)));
      expect(schedule.steps.flatMap((s) => (s.step === 'op' ? [s.op] : []))).toEqual([...trace.ops, { op: 'commit' }]);
      // It survives JSON (a capsule) and runs the same from there.
      expect(validateSchedule(JSON.parse(JSON.stringify(schedule)))).toEqual(schedule);
    }
    const bad = JSON.parse(JSON.stringify(traceSchedule(trace, { seed: 3, faults: 'none', mode: 'live' }).schedule)) as Schedule;
    const w = bad.steps.find((s) => s.step === 'op' && s.op.op === 'write' && s.op.fingerprints);
    if (w?.step !== 'op' || w.op.op !== 'write' || !w.op.fingerprints) throw new Error('the trace has a write');
    w.op.fingerprints = [...w.op.fingerprints, 'zz'];
    expect(() => validateSchedule(bad)).toThrow(/fingerprints: got .*expected a list of \d+ fingerprints/);
    delete bad.setup.blockSizeBytes;
    expect(() => validateSchedule(bad)).toThrow(/with setup.blockSizeBytes set/);
    bad.setup.blockSizeBytes = 5000;
    expect(() => validateSchedule(bad)).toThrow(/setup.blockSizeBytes: got 5000, expected one of 4096/);
  });

  it('runs the same from its schedule read back from JSON, and shrinks', async () => {
    // A seed without a master fault: a master crash can take the rogue write with it before a commit (seeds 3, 4).
    const { options, schedule } = traceSchedule(trace, { seed: 7, faults: 'all', mode: 'live', breakInvariant: true });
    const a = await executeSchedule(options, schedule);
    const b = await executeSchedule(options, JSON.parse(JSON.stringify(schedule)) as Schedule);
    expect(a.ok).toBe(false);
    expect(b.traceHash).toBe(a.traceHash);
    expect(b.problems).toEqual(a.problems);
    const s = await shrinkSchedule(options, a, { budget: 150 });
    expect(s.result.ok).toBe(false);
    expect(s.schedule.steps.length).toBeLessThan(schedule.steps.length);
    expect(s.schedule.setup.blockSizeBytes).toBe(4096);
  });

  it('replays the trace at its BLKSIZE and only the first N ops when asked', async () => {
    const big = loadTrace(traceText([
      { op: 'create', path: '/x', mode: 0, fh: 1, r: 0 },
      { op: 'write', fh: 1, off: 0, len: 40000, fp: [FP_A, FP_B, FP_A], r: 0 },
      { op: 'release', fh: 1, r: 0 },
    ], { header: { ...HEADER, blksize: 16384 } }), 'big');
    const r = await replayTrace(big, { seed: 1, faults: 'power', mode: 'live' });
    expect(r.result.problems).toEqual([]);
    // Whatever master faults seed 1 draws, /x was created and written before the closing commit, or rolled back whole.
    if (masterFaults(r.result) === 0) expect([...(r.finalTree as Map<string, string>)]).toEqual([['/x', 'file size=40000 nlink=1']]);
    expect(r.result.engine?.blockSizeBytes).toBe(16384);
    const first = await replayTrace(trace, { seed: 1, faults: 'none', mode: 'live', ops: 2 });
    expect(first.result.options.ops).toBe(3);
    expect([...(first.finalTree as Map<string, string>)]).toEqual([['/d', 'dir nlink=2'], ['/d/a', 'file size=0 nlink=1']]);
    await expect(replayTrace(trace, { seed: 1, faults: 'none', mode: 'live', ops: 99 })).rejects.toThrow(/ops must be an integer in 0\.\.17 \(the operations the trace has\), got 99/);
  });

  it('convertTrace keeps the parsed lines, which parse to the same ops again', () => {
    const again = convertTrace(parseTrace(`${trace.lines.join('\n')}\n`, 'again'));
    expect(again.ops).toEqual(trace.ops);
  });
});

describe('lessfs-sim replay-trace', () => {
  it('prints the trace summary and the run report; exit 0', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 't.jsonl'), traceText(WORKLOAD));
    const r = await cli(['replay-trace', 't.jsonl', '--seed', '5', '--faults', 'all'], dir);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('trace: t.jsonl (BLKSIZE 4096): 25 operations recorded: 17 to replay, 6 open/release, 2 skipped');
    expect(r.stdout).toContain('  skipped 1: chmod (no simulator equivalent)');
    expect(r.stdout).toContain('lessfs-sim: seed 5, live mode, faults all, buggify on, 18 ops');
    expect(r.stdout).toContain('faults injected:');
    expect(r.stdout).toContain('invariants checked:');
    expect(r.stdout).toMatch(/trace hash: +[0-9a-f]{16}:\d+/);
    expect(r.stdout).toMatch(/simulated time: +[\d.]+ s/);
    expect(r.stdout).toContain('result: OK');
    const again = await cli(['replay-trace', 't.jsonl', '--seed', '5', '--faults', 'all'], dir);
    expect(again.stdout.match(/trace hash: +(\S+)/)?.[1]).toBe(r.stdout.match(/trace hash: +(\S+)/)?.[1]);
  });

  it('a failure writes a capsule holding the trace schedule, which replay reproduces and shrinks without the trace file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 't.jsonl'), traceText(WORKLOAD));
    const r = await cli(['replay-trace', 't.jsonl', '--seed', '2', '--mode', 'batch', '--test-break-invariant', '--capsule-dir', dir], dir);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toContain('result: FAILED');
    const path = join(dir, 'lessfs-sim-failure-trace-2.json');
    expect(r.stdout).toContain(`reproduce: lessfs-sim replay ${path}`);
    expect(r.stdout).toContain('regenerate: lessfs-sim replay-trace t.jsonl --seed 2 --faults none --mode batch --test-break-invariant');
    const capsule = JSON.parse(readFileSync(path, 'utf8'));
    expect(capsule.format).toBe('lessfs-sim-capsule/2');
    expect(capsule.command).toBe('lessfs-sim replay-trace t.jsonl --seed 2 --faults none --mode batch --test-break-invariant');
    expect(capsule.schedule.setup.blockSizeBytes).toBe(4096);
    expect(capsule.schedule.steps.filter((s: { step: string }) => s.step === 'op').length).toBe(17 + 1); // the trace's 17 ops and the closing commit
    rmSync(join(dir, 't.jsonl'));
    const rep = await cli(['replay', path, '--shrink', '--shrink-budget', '60', '--capsule-dir', dir], dir);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect(rep.stdout).toContain('replay: reproduced exactly');
    // Shrinking works on the trace's schedule as on any: fewer steps, same BLKSIZE, still failing.
    const shrunk = JSON.parse(readFileSync(join(dir, 'lessfs-sim-failure-trace-2-shrunk.json'), 'utf8'));
    expect(shrunk.schedule.steps.length).toBeLessThan(capsule.schedule.steps.length);
    expect(shrunk.schedule.setup.blockSizeBytes).toBe(4096);
    expect(shrunk.problems.length).toBeGreaterThan(0);
    expect(shrunk.command).toBe(capsule.command);
  });

  it('bad traces exit 1 naming the line; usage errors exit 2', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.jsonl'), traceText([{ op: 'mkdir', path: 'x', mode: 0, r: 0 }]));
    writeFileSync(join(dir, 't.jsonl'), traceText(WORKLOAD));
    const bad = await cli(['replay-trace', 'bad.jsonl'], dir);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('lessfs-sim: bad.jsonl line 2: path: expected an absolute path (a string starting with /), got "x"\n');
    const missing = await cli(['replay-trace', 'nope.jsonl'], dir);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read trace nope\.jsonl: no such file/);
    const cases: Array<[string[], RegExp]> = [
      [['replay-trace'], /replay-trace needs exactly one trace FILE/],
      [['replay-trace', 't.jsonl', '--seeds', '1..3'], /replay-trace does not take --seeds/],
      [['replay-trace', 't.jsonl', '--ops', 'x'], /bad --ops 'x' \(expected an integer >= 0\)/],
      [['replay-trace', 't.jsonl', '--ops', '500'], /ops must be an integer in 0\.\.17/],
      [['replay-trace', 't.jsonl', '--faults', 'bogus'], /unknown fault profile 'bogus'/],
      [['replay-trace', 't.jsonl', '--config', 'bs8k.cfg'], /the config sets BLKSIZE 8192, the trace was recorded with BLKSIZE 4096/],
    ];
    writeFileSync(join(dir, 'bs8k.cfg'), 'BLKSIZE=8192\n');
    for (const [args, msg] of cases) {
      const r = await cli(args, dir);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
    }
  });
});
