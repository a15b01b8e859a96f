// Shipping faults between a batch master and a watchdir slave: files dropped,
// duplicated, reordered, cut at any byte (a copy still running, written in
// place), bit-flipped, from another filesystem or of another block size. After
// every scan: the slave's tree is the master's tree at the slave's txn (nothing
// wrong or partial applied), refused files stay under their names, applied and
// duplicate files are renamed -processed, a gap waits, and each refusal is
// logged once, not on every scan. Delivering the right files then brings the
// slave to the master's final tree.

import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { processedLogName, rotatedLogName } from '../../src/core/replication/master-log.ts';
import { BatchCluster } from '../../src/sim/batch-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { buildMasterHistory, contentKey, propOptions, type MasterHistory } from './batch-support.ts';

const FS_ID = 'fs-main';
const FILES = 4;
/** Far beyond any test's virtual time: scans run when the test says. */
const POLL_MS = 1e12;

interface Foreign {
  /** Files of another filesystem, sequences 1.. */
  otherFs: Uint8Array[];
  /** Files of this fs id but BLKSIZE 8192. */
  otherBlockSize: Uint8Array[];
}

let foreign: Foreign;

beforeAll(async () => {
  const other = await buildMasterHistory(900_001, { files: FILES, opsPerFile: 3, cluster: { masterFsId: 'fs-other' } });
  const big = await buildMasterHistory(900_002, { files: FILES, opsPerFile: 3, cluster: { masterFsId: FS_ID }, engine: { blockSizeBytes: 8192 } });
  foreign = { otherFs: other.files.map((f) => f.bytes), otherBlockSize: big.files.map((f) => f.bytes) };
});

// ------------------------------------------------------------------ model

interface Entry {
  good: boolean;
  key: string;
}

interface ScanExpectation {
  applied: number[];
  skipped: number[];
  /** Bad files met with this content for the first time: one refusal line each. */
  firstRefusals: number[];
}

/**
 * What a watchdir slave should do, by sequence: apply the next file when it is
 * right, skip (and rename) a right copy of an applied one, refuse a bad file
 * (it stays; a bad file next in line stops the scan, a bad copy of an applied
 * one does not), and wait at a gap. A slave that applied nothing takes only
 * file 1 (txn 1 on).
 */
class WatchModel {
  readonly dir = new Map<number, Entry>();
  readonly processed = new Set<number>();
  pos = { sequence: 0, txn: 0 };
  private readonly reported = new Map<number, string>();

  constructor(private readonly lastTxnOf: (sequence: number) => number) {}

  deliver(sequence: number, entry: Entry): void {
    this.dir.set(sequence, entry);
  }

  scan(): ScanExpectation {
    const out: ScanExpectation = { applied: [], skipped: [], firstRefusals: [] };
    const refuse = (seq: number, e: Entry): void => {
      if (this.reported.get(seq) === e.key) return;
      this.reported.set(seq, e.key);
      out.firstRefusals.push(seq);
    };
    const done = (seq: number): void => {
      this.dir.delete(seq);
      this.processed.add(seq);
      this.reported.delete(seq);
    };
    for (const seq of [...this.dir.keys()].sort((a, b) => a - b)) {
      const e = this.dir.get(seq) as Entry;
      if (this.pos.sequence > 0 && seq <= this.pos.sequence) {
        if (e.good) {
          done(seq);
          out.skipped.push(seq);
        } else {
          refuse(seq, e);
        }
        continue;
      }
      if (this.pos.sequence > 0 && seq > this.pos.sequence + 1) break;
      if (e.good && seq === this.pos.sequence + 1) {
        this.pos = { sequence: seq, txn: this.lastTxnOf(seq) };
        done(seq);
        out.applied.push(seq);
        continue;
      }
      if (!e.good) refuse(seq, e);
      break;
    }
    return out;
  }

  names(): string[] {
    return [...[...this.dir.keys()].map(rotatedLogName), ...[...this.processed].map(processedLogName)].sort();
  }
}

// ------------------------------------------------------------------ deliveries

type Kind = 'good' | 'truncated' | 'flip' | 'otherFs' | 'otherBlockSize';

interface Delivery {
  kind: Kind;
  index: number;
  atomically: boolean;
  /** Where to cut or flip, as a fraction of the file. */
  at: number;
  bit: number;
}

function deliveryArb(): fc.Arbitrary<Delivery> {
  return fc.record({
    kind: fc.constantFrom<Kind>('good', 'good', 'good', 'truncated', 'flip', 'otherFs', 'otherBlockSize'),
    index: fc.nat(FILES - 1),
    atomically: fc.boolean(),
    at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    bit: fc.nat(7),
  });
}

/** The bytes a delivery puts under replog.dta-SEQUENCE, and whether they are the master's file. */
function materialize(h: MasterHistory, d: Delivery): { sequence: number; bytes: Uint8Array; good: boolean; atomically: boolean } {
  switch (d.kind) {
    case 'good': {
      const f = h.files[d.index];
      return { sequence: f.sequence, bytes: f.bytes, good: true, atomically: d.atomically };
    }
    case 'truncated': {
      const f = h.files[d.index];
      // A copy still running: written in place, cut at any byte.
      return { sequence: f.sequence, bytes: f.bytes.slice(0, Math.floor(d.at * f.bytes.length)), good: false, atomically: false };
    }
    case 'flip': {
      const f = h.files[d.index];
      const bytes = f.bytes.slice();
      bytes[Math.floor(d.at * bytes.length)] ^= 1 << d.bit;
      return { sequence: f.sequence, bytes, good: false, atomically: d.atomically };
    }
    case 'otherFs': {
      // Sequence 2 on: a slave that applied nothing would adopt another fs's file 1 (by design).
      const i = 1 + (d.index % (FILES - 1));
      return { sequence: i + 1, bytes: foreign.otherFs[i], good: false, atomically: d.atomically };
    }
    case 'otherBlockSize':
      return { sequence: d.index + 1, bytes: foreign.otherBlockSize[d.index], good: false, atomically: d.atomically };
  }
}

// ------------------------------------------------------------------ checks

const REFUSAL = /refusing (replog\.dta-\d+):/;

async function openSlave(seed: number): Promise<BatchCluster> {
  const c = new BatchCluster(new Scheduler({ seed }), seed, { watchdirPollMs: POLL_MS, masterFsId: FS_ID });
  await c.format();
  await c.open(c.slave, true);
  await c.settleWatch();
  return c;
}

/** Scan twice and check the slave against the model; the second scan must change and log nothing. */
async function scanAndCheck(c: BatchCluster, h: MasterHistory, model: WatchModel, label: string): Promise<void> {
  const lines = c.slave.machine.logger.lines;
  const watch = c.slave.node?.watchdir;
  const applier = c.slave.node?.slaveApplier;
  if (!watch || !applier) throw new Error('slave not open with its watchdir');
  const before = lines.length;
  const appliedBefore = watch.stats.filesApplied;
  const skippedBefore = watch.stats.duplicatesSkipped;
  await c.scan();
  const want = model.scan();
  const added = lines.slice(before);
  const ctx = `${label}\nslave log:\n${added.join('\n')}`;
  expect(await c.watchNames(), ctx).toEqual(model.names());
  expect(applier.position(), ctx).toEqual({ role: 'slave', fsId: model.pos.sequence > 0 ? h.fsId : undefined, txn: model.pos.txn, sequence: model.pos.sequence });
  expect(await c.digest(c.slave), `${ctx}\nslave tree at txn ${model.pos.txn}`).toBe(h.digestAt.get(model.pos.txn));
  expect(watch.stats.filesApplied - appliedBefore, ctx).toBe(want.applied.length);
  expect(watch.stats.duplicatesSkipped - skippedBefore, ctx).toBe(want.skipped.length);
  const refusedNames = added.map((l) => REFUSAL.exec(l)?.[1]).filter((n): n is string => n !== undefined);
  for (const seq of want.firstRefusals) {
    expect(refusedNames.filter((n) => n === rotatedLogName(seq)), `${ctx}\none refusal line for ${rotatedLogName(seq)}`).toHaveLength(1);
  }
  for (const n of new Set(refusedNames)) expect(refusedNames.filter((m) => m === n), `${ctx}\nrefusals of ${n}`).toHaveLength(1);

  const again = lines.length;
  await c.scan();
  expect(lines.slice(again), `${label}: a second scan with nothing new logs nothing`).toEqual([]);
  expect(await c.watchNames(), label).toEqual(model.names());
}

async function runShipping(seed: number, h: MasterHistory, deliveries: Delivery[]): Promise<void> {
  const c = await openSlave(seed);
  const model = new WatchModel((seq) => h.files[seq - 1].lastTxn);
  const done: string[] = [];
  for (const d of deliveries) {
    const m = materialize(h, d);
    done.push(`${d.kind} ${rotatedLogName(m.sequence)}${m.atomically ? '' : ' in place'} (${m.bytes.length} bytes)`);
    await c.deliver(rotatedLogName(m.sequence), m.bytes, m.atomically);
    model.deliver(m.sequence, { good: m.good, key: contentKey(m.bytes) });
    await scanAndCheck(c, h, model, `seed=${seed} after: ${done.join(', ')}`);
  }
  // The operator ships every right file again: the slave converges.
  for (const f of h.files) {
    done.push(`right ${f.name}`);
    await c.deliver(f.name, f.bytes, true);
    model.deliver(f.sequence, { good: true, key: contentKey(f.bytes) });
  }
  await scanAndCheck(c, h, model, `seed=${seed} after: ${done.join(', ')}`);
  const last = h.files[h.files.length - 1];
  expect(model.pos).toEqual({ sequence: last.sequence, txn: last.lastTxn });
  expect(await c.digest(c.slave)).toBe(h.finalDigest);
  expect(await c.watchNames()).toEqual(h.files.map((f) => processedLogName(f.sequence)).sort());
  await c.close(c.slave);
  expect((await c.fsck(c.slave)).problems, `seed=${seed}`).toEqual([]);
}

const histories = new Map<number, MasterHistory>();
async function history(seed: number): Promise<MasterHistory> {
  let h = histories.get(seed);
  if (!h) {
    h = await buildMasterHistory(seed, { files: FILES, opsPerFile: 6, cluster: { masterFsId: FS_ID } });
    histories.set(seed, h);
  }
  return h;
}

const g = (index: number, atomically = true): Delivery => ({ kind: 'good', index, atomically, at: 0, bit: 0 });

// ------------------------------------------------------------------ tests

describe('batch shipping faults (scripted, seed 3)', () => {
  it('drops, reorders, duplicates, cuts and flips, then converges', async () => {
    const h = await history(3);
    await runShipping(3, h, [
      g(0),
      { kind: 'truncated', index: 1, atomically: false, at: 0.6, bit: 0 },
      { kind: 'truncated', index: 1, atomically: false, at: 0.95, bit: 0 },
      g(1, false), // the copy finishes in place
      g(3), // file 3 dropped: 4 waits
      g(0), // a duplicate
      { kind: 'otherFs', index: 1, atomically: true, at: 0, bit: 0 },
      { kind: 'otherBlockSize', index: 2, atomically: true, at: 0, bit: 0 },
      g(2),
    ]);
  });

  it('another filesystem\'s file and another block size are refused, one log line each, nothing applied', async () => {
    const h = await history(3);
    const c = await openSlave(3);
    await c.deliver(h.files[0].name, h.files[0].bytes);
    await c.scan();
    await c.deliver(rotatedLogName(2), foreign.otherFs[1]);
    for (let i = 0; i < 3; i++) await c.scan();
    const lines = c.slave.machine.logger.lines;
    expect(lines.filter((l) => l.includes(`refusing ${rotatedLogName(2)}:`) && l.includes('EFSID'))).toHaveLength(1);
    await c.deliver(rotatedLogName(2), foreign.otherBlockSize[1]);
    for (let i = 0; i < 3; i++) await c.scan();
    expect(lines.filter((l) => l.includes(`refusing ${rotatedLogName(2)}:`) && l.includes('EBLKSIZE'))).toHaveLength(1);
    expect(c.slave.node?.slaveApplier?.position()).toEqual({ role: 'slave', fsId: FS_ID, txn: h.files[0].lastTxn, sequence: 1 });
    expect(await c.watchNames()).toEqual([processedLogName(1), rotatedLogName(2)]);
    expect(await c.digest(c.slave)).toBe(h.digestAt.get(h.files[0].lastTxn));
  });

  it('a slave that applied nothing refuses a file of sequence 2 on, then applies it once file 1 arrived', async () => {
    const h = await history(3);
    await runShipping(3, h, [g(1), g(0)]);
  });

  it('a damaged file replaced by the right copy (same size) is applied', async () => {
    const h = await history(3);
    await runShipping(3, h, [g(0), { kind: 'flip', index: 1, atomically: true, at: 0.5, bit: 3 }, g(1)]);
  });

  it('a damaged copy of an applied file does not hold up the next one', async () => {
    const h = await history(3);
    await runShipping(3, h, [g(0), g(1), { kind: 'truncated', index: 0, atomically: false, at: 0.5, bit: 0 }, g(2)]);
  });
});

describe('batch shipping faults (property)', () => {
  it('never applies anything wrong, logs each refusal once, and converges', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(deliveryArb(), { minLength: 1, maxLength: 14 }), async (seed, deliveries) => {
        await runShipping(seed, await history(seed), deliveries);
      }),
      propOptions(40, 102),
    );
  });
});
