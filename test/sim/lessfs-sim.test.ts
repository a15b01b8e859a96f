// lessfs-sim: one seeded simulation is deterministic, passes under every
// fault profile for a few seeds in both modes, reports a real divergence
// (a write behind the oracle's back) as problems; a seed yields an explicit
// JSON schedule whose execution is the same run, any sub-sequence of which is
// a valid schedule; shrinking reduces a failing schedule to a few steps; a
// lessfs.cfg sets the nodes' options. The CLI runs one seed and a campaign,
// writes a capsule on failure that `replay` reproduces exactly, shrinks,
// validates capsules and configs, checks determinism, and rejects bad usage
// with exit 2.

import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { executeSchedule, FAULT_PROFILES, generateSchedule, problemKind, reproduceCommand, runSimulation, simOptions, type FaultProfile } from '../../src/sim/campaign.ts';
import { runSeeds } from '../../src/sim/parallel.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { applyFillStep, diskFilled, mayRefuseForRoom, ScheduleError, validateSchedule, type Schedule, type SimMode } from '../../src/sim/schedule.ts';
import { SimDiskMedium } from '../../src/sim/disk.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { shrinkSchedule } from '../../src/sim/shrink.ts';
import { simCli as cli, tempDirs } from '../support/sim-cli.ts';

const temp = tempDirs('lessfs-sim-test-');
const tempDir = temp.make;
afterAll(temp.removeAll);

describe('runSimulation', () => {
  it('is deterministic: the same options give the same trace hash, another seed another', async () => {
    for (const mode of ['live', 'batch'] as const) {
      const a = await runSimulation({ seed: 5, ops: 40, faults: 'all', mode });
      const b = await runSimulation({ seed: 5, ops: 40, faults: 'all', mode });
      const c = await runSimulation({ seed: 6, ops: 40, faults: 'all', mode });
      expect(a.problems).toEqual([]);
      expect(b.traceHash).toBe(a.traceHash);
      expect(b.faultsInjected).toEqual(a.faultsInjected);
      expect(b.simulatedMs).toBe(a.simulatedMs);
      expect(c.traceHash).not.toBe(a.traceHash);
    }
  });

  for (const mode of ['live', 'batch'] as const) {
    it(`every profile passes for a few seeds (${mode})`, async () => {
      const injected = new Set<string>();
      for (const faults of FAULT_PROFILES) {
        for (const seed of [1, 2]) {
          const r = await runSimulation({ seed, ops: 40, faults, mode });
          expect(r.problems, reproduceCommand(r.options)).toEqual([]);
          expect(r.ok).toBe(true);
          expect(r.ops).toBeGreaterThan(0);
          expect(r.invariantsChecked.length).toBeGreaterThan(3);
          expect(r.simulatedMs).toBeGreaterThan(0);
          if (faults === 'none') expect(r.faultsInjected).toEqual({});
          for (const k of Object.keys(r.faultsInjected)) injected.add(k);
        }
      }
      // The profiles really inject: link or shipping faults, and node faults.
      const kinds = [...injected];
      expect(kinds.some((k) => k.startsWith(mode === 'live' ? 'net ' : 'ship ')), kinds.join(', ')).toBe(true);
      expect(kinds.some((k) => /(crash|power)$/.test(k)), kinds.join(', ')).toBe(true);
    });
  }

  /**
   * Seeds 1..last of a profile in these modes: every one passes; the faults
   * injected, summed over them and keyed "MODE KIND", must include `want`.
   */
  async function profileInjects(faults: FaultProfile, modes: readonly SimMode[], last: number, want: readonly string[]): Promise<void> {
    const seen: Record<string, number> = {};
    for (const mode of modes) {
      for (let seed = 1; seed <= last; seed++) {
        const r = await runSimulation({ seed, faults, mode });
        expect(r.problems, reproduceCommand(r.options)).toEqual([]);
        for (const [k, n] of Object.entries(r.faultsInjected)) seen[`${mode} ${k}`] = (seen[`${mode} ${k}`] ?? 0) + n;
      }
    }
    for (const k of want) expect(seen[k], `${k} in ${JSON.stringify(seen)}`).toBeGreaterThan(0);
  }

  it('batch mode: the master (alone or with the slave) crashes and loses power mid-operation; it recovers at a committed txn with its rotated files unchanged, and the run passes', async () => {
    expect((await runSimulation({ seed: 1, ops: 5, faults: 'power', mode: 'batch' })).invariantsChecked).toContain('master recovers at a committed txn, not before its last fsync/commit, its rotated files unchanged');
    await profileInjects('power', ['batch'], 16, ['batch master crash', 'batch master power', 'batch both crash', 'batch both power', 'batch slave power']);
  }, 120_000);

  it('replication toggles (net profile): the master\'s and the slave\'s replication go off and on mid-workload, live and batch, and every invariant holds', async () => {
    await profileInjects('net', ['live', 'batch'], 10, ['live master replication off', 'live slave replication off', 'batch master replication off', 'batch slave replication off']);
  }, 120_000);

  it('full disks and I/O errors (disk profile): both nodes\' disks fill and fail writes; the master refuses writes, fsyncs, commits (batch: rotations; the operator\'s copies fail), stopped engines are remounted, and every invariant holds', async () => {
    await profileInjects('disk', ['live', 'batch'], 12, [
      'live master disk full', 'live slave disk full', 'live master ops refused (ENOSPC)', 'batch master disk full', 'batch slave disk full',
      'live master disk write errors', 'live slave disk write errors', 'batch master disk write errors', 'batch slave disk write errors',
      'live master ops failed (EIO)', 'live master stopped (EIO), remounted',
    ]);
    // The oracle takes ENOSPC as a refusal only where the master may refuse.
    const full = new SimDiskMedium(new Scheduler({ seed: 1 }), new SimRng(1), { label: 'd' });
    const write = { op: 'write', path: '/a', offsetBytes: 0, pool: 1, lengthBytes: 10 } as const;
    expect(mayRefuseForRoom(write, { diskFull: false }, full)).toBe(false);
    expect(mayRefuseForRoom(write, { diskFull: true }, full)).toBe(true);
    applyFillStep(full, { step: 'fill', who: 'master', roomBlocks: 0 }, 4096);
    expect(diskFilled(full)).toBe(true);
    for (const op of [write, { op: 'fsync', path: '/a' }, { op: 'commit' }] as const) expect(mayRefuseForRoom(op, { diskFull: false }, full)).toBe(true);
    for (const op of [{ op: 'create', path: '/a' }, { op: 'truncate', path: '/a', sizeBytes: 1 }, { op: 'mkdir', path: '/a' }] as const) expect(mayRefuseForRoom(op, { diskFull: true }, full)).toBe(false);
    applyFillStep(full, { step: 'room', who: 'master' }, 4096);
    expect(diskFilled(full)).toBe(false);
  }, 120_000);

  it('a write behind the oracle\'s back is found (live and batch)', async () => {
    for (const mode of ['live', 'batch'] as const) {
      const r = await runSimulation({ seed: 3, ops: 30, faults: 'none', mode, breakInvariant: true });
      expect(r.ok).toBe(false);
      expect(r.problems.join('\n')).toContain('/rogue');
    }
  });

  it('runSeeds: worker threads give every seed the trace hash it has in this thread; a run that throws fails the campaign', async () => {
    const common = { ops: 30, faults: 'all', mode: 'live' } as const;
    const hashes = async (jobs: number): Promise<Array<[number, string]>> => {
      const got: Array<[number, string]> = [];
      await runSeeds(1, 5, common, jobs, (o) => got.push([o.seed, o.traceHash]));
      return got.sort((a, b) => a[0] - b[0]);
    };
    const one = await hashes(1);
    expect(one.map(([seed]) => seed)).toEqual([1, 2, 3, 4, 5]);
    expect(await hashes(2)).toEqual(one);
    await expect(runSeeds(1, 3, { ...common, ops: 0 }, 2, () => undefined)).rejects.toThrow(/seed \d threw in its worker thread: .*ops/);
    // Twice per seed (check-determinism): the second run, from the schedule read back from JSON, is the same run.
    const twice: Array<[number, string, string | undefined]> = [];
    await runSeeds(1, 3, common, 2, (o) => twice.push([o.seed, o.traceHash, o.againTraceHash]), true);
    twice.sort((a, b) => a[0] - b[0]);
    expect(twice).toEqual(one.slice(0, 3).map(([seed, hash]) => [seed, hash, hash]));
  });

  it('checks its options', () => {
    expect(() => simOptions({ seed: -1 })).toThrow(/seed/);
    expect(() => simOptions({ seed: 1, ops: 0 })).toThrow(/ops/);
    expect(() => simOptions({ seed: 1, faults: 'bogus' as never })).toThrow(/profile/);
    expect(simOptions({ seed: 1 })).toEqual({ seed: 1, ops: 200, faults: 'none', mode: 'live' });
  });
});


const CFG = `# a lessfs.cfg for the simulator
BLOCKDATA_PATH=/data/dta
META_PATH=/data/mta
BLKSIZE=8192
HASHNAME=blake2b512
COMPRESSION=lz4
COMMIT_INTERVAL=1
CACHESIZE=1
SYNC_RELAX=1
LISTEN_IP=127.0.0.1
REPLICATION_SECRET=0123456789abcdef0123
ROTATE_REPLOG_SIZE=4K
ROTATE_REPLOG_INTERVAL=1
`;

describe('schedules', () => {
  it('a seed yields a JSON schedule; executing it read back from JSON is the same run (live and batch)', async () => {
    for (const mode of ['live', 'batch'] as const) {
      const o = simOptions({ seed: 7, ops: 40, faults: 'all', mode });
      const schedule = generateSchedule(o);
      expect(generateSchedule(o)).toEqual(schedule);
      const json = JSON.parse(JSON.stringify(schedule)) as Schedule;
      expect(json).toEqual(schedule);
      expect(validateSchedule(json)).toBe(json);
      expect(schedule.steps.filter((st) => st.step === 'op')).toHaveLength(40);
      expect(schedule.steps.some((st) => st.step === (mode === 'live' ? 'check' : 'rotate'))).toBe(true);
      const a = await runSimulation(o);
      const b = await executeSchedule(o, json);
      expect(a.problems).toEqual([]);
      expect(b.traceHash).toBe(a.traceHash);
      expect(b.faultsInjected).toEqual(a.faultsInjected);
    }
  });

  it('any sub-sequence of a schedule is a valid schedule that passes (live and batch, with faults)', async () => {
    for (const mode of ['live', 'batch'] as const) {
      for (const seed of [1, 2]) {
        const o = simOptions({ seed, ops: 50, faults: 'all', mode });
        const full = generateSchedule(o);
        const r = new SimRng(seed).split('subsets');
        for (const keep of [0.2, 0.6]) {
          const steps = full.steps.filter(() => r.chance(keep));
          expect(steps.length).toBeLessThan(full.steps.length);
          const res = await executeSchedule(o, { ...full, steps });
          expect(res.problems, `${mode} seed ${seed} keep ${keep}`).toEqual([]);
        }
        // No operations at all: faults, cuts, heals and checks alone.
        const res = await executeSchedule(o, { ...full, steps: full.steps.filter((st) => st.step !== 'op') });
        expect(res.problems).toEqual([]);
        expect(res.ops).toBe(0);
      }
    }
  });

  it('an operation on a path no earlier step created gets the model\'s result (ENOENT), not a failure', async () => {
    const o = simOptions({ seed: 1, ops: 1, mode: 'live' });
    const base = generateSchedule(o);
    const steps: Schedule['steps'] = [
      { step: 'op', op: { op: 'write', path: '/nowhere/x', offsetBytes: 0, pool: 1, lengthBytes: 10 }, idleMs: 0 },
      { step: 'op', op: { op: 'rename', from: '/missing', to: '/a' }, idleMs: 5 },
      { step: 'heal', kind: 'partition' },
      { step: 'op', op: { op: 'read', path: '/missing', offsetBytes: 0, lengthBytes: 4 }, idleMs: 0 },
    ];
    const r = await executeSchedule(o, { ...base, steps });
    expect(r.problems).toEqual([]);
    expect(r.ops).toBe(3);
  });

  it('validateSchedule names the field, what it holds and what was expected', () => {
    const good = JSON.parse(JSON.stringify(generateSchedule(simOptions({ seed: 2, ops: 5, mode: 'batch' })))) as Schedule;
    const cases: Array<[(s: any) => void, RegExp]> = [
      [(s) => void (s.steps[1].op.lengthBytes = 'x'), /^schedule\.steps\[1\]\.op\.lengthBytes: got "x", expected an integer in 0\.\./],
      [(s) => void (s.steps[0].step = 'jump'), /^schedule\.steps\[0\]\.step: got "jump", expected one of op, fault, cut/],
      [(s) => void s.steps.push({ step: 'cut', kind: 'partition' }), /steps\[\d+\]\.step: got "cut", expected a step of a batch schedule \(op, fault, rotate, fill, room, toggle, eio, rogue\)/],
      [(s) => void s.steps.push({ step: 'fault', who: 'nobody', kind: 'crash', masterFirst: false, afterSteps: 1 }), /\.who: got "nobody", expected one of master, slave, both/],
      [(s) => void (s.setup.disk.tornWriteProbability = 2), /^schedule\.setup\.disk\.tornWriteProbability: got 2, expected a number in 0\.\.1/],
      [(s) => void (s.steps[0].op.path = 'relative'), /steps\[0\]\.op\.path: got "relative", expected an absolute path/],
      [(s) => void delete s.setup.commitIntervalMs, /^schedule\.setup\.commitIntervalMs: missing, expected a value/],
      [(s) => void (s.extra = 1), /^schedule\.extra: got 1, expected no such field/],
      [(s) => void s.steps.push({ step: 'fill', who: 'both', roomBlocks: 1 }), /steps\[\d+\]\.who: got "both", expected one of master, slave/],
      [(s) => void s.steps.push({ step: 'fill', who: 'slave', roomBlocks: 65 }), /steps\[\d+\]\.roomBlocks: got 65, expected an integer in 0\.\.64/],
      [(s) => void s.steps.push({ step: 'room' }), /steps\[\d+\]\.who: missing, expected a value/],
      [(s) => void s.steps.push({ step: 'toggle', who: 'slave', enabled: 1 }), /steps\[\d+\]\.enabled: got 1, expected true or false/],
      [(s) => void s.steps.push({ step: 'eio', who: 'master', probability: 0.7 }), /steps\[\d+\]\.probability: got 0\.7, expected a number in 0\.\.0\.5/],
    ];
    expect(() => validateSchedule(good)).not.toThrow();
    for (const [spoil, msg] of cases) {
      const s = JSON.parse(JSON.stringify(good));
      spoil(s);
      expect(() => validateSchedule(s)).toThrow(ScheduleError);
      expect(() => validateSchedule(s)).toThrow(msg);
    }
  });

  it('problemKind drops times, numbers, values and details', () => {
    expect(problemKind('12.5 ms: master op {"op":"write","path":"/a"}: got {"err":"EIO"}, the model says {"ok":""}')).toBe('master op');
    expect(problemKind('3055.54 ms: slave at txn 6 holds a tree the master never had at that txn:\n/a file')).toBe('slave at txn N holds a tree the master never had at that txn');
    expect(problemKind('9 ms: after delivering replog.dta-3: slave tree at txn 7 is none of the 2 master trees of that txn:\nx')).toBe('slave tree at txn N is none of the N master trees of that txn');
    expect(problemKind('1 ms: the run failed with EIO: disk gone')).toBe('the run failed with EIO');
    expect(problemKind('commit overlap: 5 ms: master starts a commit')).toBe('commit overlap');
  });
});

describe('shrinking', () => {
  for (const mode of ['live', 'batch'] as const) {
    it(`a write behind the oracle's back shrinks to at most 3 steps that still fail the same way (${mode})`, async () => {
      const o = simOptions({ seed: 4, ops: 120, faults: 'none', mode, breakInvariant: true });
      const failed = await runSimulation(o);
      expect(failed.ok).toBe(false);
      const progress: number[] = [];
      const s = await shrinkSchedule(o, failed, { budget: 200, progress: (p) => progress.push(p.runs) });
      expect(s.originalSteps).toBe(failed.schedule.steps.length);
      expect(s.originalSteps).toBeGreaterThan(120);
      expect(s.schedule.steps.length).toBeLessThanOrEqual(3);
      expect(s.schedule.steps.some((st) => st.step === 'rogue')).toBe(true);
      expect(s.exhausted).toBe(false);
      expect(s.runs).toBeLessThanOrEqual(200);
      expect(progress.length).toBe(s.runs);
      expect(s.result.problems.map(problemKind)).toContain(s.kind);
      expect(s.kind).toBe(problemKind(failed.problems[0]));
      // Replaying the shrunk schedule (read back from JSON) is the same run.
      const again = await executeSchedule(o, JSON.parse(JSON.stringify(s.schedule)) as Schedule);
      expect(again.traceHash).toBe(s.result.traceHash);
      expect(again.problems).toEqual(s.result.problems);
    });
  }

  it('stops at its budget with the smallest failing schedule found so far', async () => {
    const o = simOptions({ seed: 4, ops: 60, faults: 'none', mode: 'live', breakInvariant: true });
    const failed = await runSimulation(o);
    const s = await shrinkSchedule(o, failed, { budget: 2 });
    expect(s.exhausted).toBe(true);
    expect(s.runs).toBe(2);
    expect(s.schedule.steps.length).toBeLessThan(failed.schedule.steps.length);
    expect(s.result.problems.map(problemKind)).toContain(s.kind);
  });

  it('refuses a run that passed', async () => {
    const r = await runSimulation({ seed: 1, ops: 5 });
    await expect(shrinkSchedule(r.options, r)).rejects.toThrow(/did not fail/);
  });
});

describe('--config', () => {
  it("nodes take the config's settings, the workload follows BLKSIZE, and the run passes (live and batch)", async () => {
    for (const mode of ['live', 'batch'] as const) {
      const o = simOptions({ seed: 3, ops: 60, faults: 'all', mode, config: { name: 'sim.cfg', text: CFG } });
      const r = await runSimulation(o);
      expect(r.problems).toEqual([]);
      expect(r.engine).toMatchObject({ blockSizeBytes: 8192, hashName: 'blake2b512', codec: 2, cacheSizeBytes: 1024 * 1024, commitIntervalMs: 1000, syncRelax: 1 });
      const writes = r.schedule.steps.flatMap((st) => (st.step === 'op' && st.op.op === 'write' ? [st.op.offsetBytes] : []));
      // The workload's offsets are drawn around block boundaries: those of 8 KiB blocks.
      const bs = 8192;
      const offsets = new Set([0, 1, 100, bs - 1, bs, 2 * bs + 7, 3 * bs, 5 * bs]);
      expect(writes.length).toBeGreaterThan(5);
      for (const off of writes) expect(offsets.has(off), String(off)).toBe(true);
      expect(writes.some((off) => off === bs - 1 || off === bs || off === 2 * bs + 7)).toBe(true);
      const plain = await runSimulation({ ...o, config: undefined });
      expect(plain.engine).toMatchObject({ blockSizeBytes: 4096, hashName: 'sha256', codec: 0 });
    }
  });

  it('batch mode: with ROTATE_REPLOG_INTERVAL the master rotates by itself between the schedule\'s rotations, and every file checks out', async () => {
    const o = simOptions({ seed: 6, ops: 100, faults: 'all', mode: 'batch', config: { name: 'sim.cfg', text: CFG } });
    let rotations = 0;
    const r = await runSimulation(o, { traceLine: (l) => void (/ master\/disk\.rename \/master\/dta\/replog\.dta -> /.test(l) && rotations++) });
    expect(r.problems).toEqual([]);
    const steps = r.schedule.steps.filter((st) => st.step === 'rotate').length;
    expect(rotations).toBeGreaterThan(steps + 2);
  });
});

describe('lessfs-sim CLI', () => {
  it('run --seed prints faults, invariants, trace hash and times; exit 0', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seed', '1', '--ops', '50'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('faults injected:');
    expect(r.stdout).toContain('invariants checked:');
    expect(r.stdout).toMatch(/trace hash: +[0-9a-f]{16}:\d+/);
    expect(r.stdout).toMatch(/simulated time: +[\d.]+ s/);
    expect(r.stdout).toMatch(/wall time: +[\d.]+ s/);
    expect(r.stdout).toContain('result: OK');
  });

  it('a 5-seed campaign prints a summary table', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seeds', '1..5', '--ops', '30', '--faults', 'swarm', '--mode', 'batch'], dir);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/seeds run +5/);
    expect(r.stdout).toMatch(/failed +0/);
    expect(r.stdout).toMatch(/sim ops per wall second +\d+/);
    expect(r.stdout).toContain('all seeds passed');
    expect(r.stderr).toContain('5/5 seeds, 0 failed');
  });

  it('a failure writes a capsule with the schedule, prints `lessfs-sim replay CAPSULE`, and replay reproduces it exactly', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seed', '4', '--ops', '30', '--test-break-invariant', '--capsule-dir', dir], dir);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toContain('result: FAILED');
    const path = join(dir, 'lessfs-sim-failure-4.json');
    expect(r.stdout).toContain(`reproduce: lessfs-sim replay ${path}`);
    expect(r.stdout).not.toContain('shrunk');
    const capsule = JSON.parse(readFileSync(path, 'utf8'));
    expect(capsule.format).toBe('lessfs-sim-capsule/2');
    expect(capsule.seed).toBe(4);
    expect(capsule.options).toEqual({ seed: 4, ops: 30, faults: 'none', mode: 'live', breakInvariant: true });
    expect(capsule.command).toBe('lessfs-sim run --seed 4 --ops 30 --faults none --mode live --test-break-invariant');
    expect(capsule.problems.length).toBeGreaterThan(0);
    expect(capsule.commit).toMatch(/^([0-9a-f]{40}|unknown)$/);
    expect(capsule.schedule).toEqual(generateSchedule(simOptions(capsule.options)));
    expect(r.stdout).toContain(capsule.traceHash);
    const rep = await cli(['replay', path], dir);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect(rep.stdout).toContain(`trace hash:     ${capsule.traceHash}`);
    expect(rep.stdout).toContain('replay: reproduced exactly');
    expect(rep.stderr).not.toContain('warning');
  });

  it('run --shrink writes the shrunk schedule; replay executes exactly that schedule (not the seed\'s)', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seed', '4', '--ops', '100', '--mode', 'batch', '--test-break-invariant', '--shrink', '--capsule-dir', dir], dir);
    expect(r.code, r.stderr).toBe(1);
    const m = /shrunk: (\d+) steps -> (\d+) steps .* in (\d+) runs/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const [from, to] = [Number(m![1]), Number(m![2])];
    expect(from).toBeGreaterThan(100);
    expect(to).toBeLessThanOrEqual(3);
    expect(r.stderr).toContain('lessfs-sim: shrinking seed 4');
    expect(r.stderr).toMatch(/shrink: run \d+\/200/);
    const path = join(dir, 'lessfs-sim-failure-4.json');
    expect(r.stdout).toContain(`reproduce: lessfs-sim replay ${path}`);
    const capsule = JSON.parse(readFileSync(path, 'utf8'));
    expect(capsule.schedule.steps).toHaveLength(to);
    expect(capsule.shrunk).toMatchObject({ fromSteps: from, runs: Number(m![3]) });
    expect(capsule.problems.length).toBeGreaterThan(0);
    const rep = await cli(['replay', path], dir);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect(rep.stdout).toContain(`schedule:       ${to} steps`);
    expect(rep.stdout).toContain(`trace hash:     ${capsule.traceHash}`);
    expect(rep.stdout).toContain('replay: reproduced exactly');
  });

  it('a passing run with --shrink does nothing special', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seed', '1', '--ops', '30', '--shrink', '--capsule-dir', dir], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('result: OK');
    expect(r.stdout).not.toContain('shrunk');
    expect(r.stderr).not.toContain('shrink');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('replay --shrink shrinks a capsule into NAME-shrunk.json; a changed commit is warned about', async () => {
    const dir = tempDir();
    await cli(['run', '--seed', '5', '--ops', '40', '--test-break-invariant', '--capsule-dir', dir], dir);
    const path = join(dir, 'lessfs-sim-failure-5.json');
    const capsule = JSON.parse(readFileSync(path, 'utf8'));
    writeFileSync(path, JSON.stringify({ ...capsule, commit: '0'.repeat(40) }));
    const rep = await cli(['replay', path, '--shrink', '--shrink-budget', '50', '--capsule-dir', dir], dir);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect(rep.stderr).toContain(`warning: the capsule was written by commit ${'0'.repeat(40)}`);
    expect(rep.stdout).toContain('replay: reproduced exactly');
    const shrunkPath = join(dir, 'lessfs-sim-failure-5-shrunk.json');
    expect(rep.stdout).toContain(`reproduce: lessfs-sim replay ${shrunkPath}`);
    const shrunk = JSON.parse(readFileSync(shrunkPath, 'utf8'));
    expect(shrunk.schedule.steps.length).toBeLessThan(capsule.schedule.steps.length);
    expect(shrunk.shrunk.fromSteps).toBe(capsule.schedule.steps.length);
    const again = await cli(['replay', shrunkPath], dir);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  it('bad capsules exit 2 naming the file, the field and what was expected', async () => {
    const dir = tempDir();
    await cli(['run', '--seed', '4', '--ops', '10', '--test-break-invariant', '--capsule-dir', dir], dir);
    const good = JSON.parse(readFileSync(join(dir, 'lessfs-sim-failure-4.json'), 'utf8'));
    const cases: Array<[(c: any) => void, RegExp]> = [
      [(c) => void (c.format = 'lessfs-sim-capsule/1'), /format: got "lessfs-sim-capsule\/1", expected "lessfs-sim-capsule\/2" \(a \/1 capsule holds no schedule/],
      [(c) => void delete c.schedule, /: schedule: missing, expected an object with seed, mode, setup, steps/],
      [(c) => void (c.schedule.steps[2].idleMs = -1), /: schedule\.steps\[2\]\.idleMs: got -1, expected an integer in 0\.\.3600000/],
      [(c) => void (c.traceHash = 42), /: traceHash: got 42, expected a trace hash/],
      [(c) => void (c.options.faults = 'bogus'), /: options: .*expected valid options: unknown fault profile 'bogus'/],
      [(c) => void (c.schedule.mode = 'batch'), /schedule\.steps\[\d+\]\.step: got "check", expected a step of a batch schedule/],
    ];
    for (const [spoil, msg] of cases) {
      const c = JSON.parse(JSON.stringify(good));
      spoil(c);
      const path = join(dir, 'spoiled.json');
      writeFileSync(path, JSON.stringify(c));
      const r = await cli(['replay', path], dir);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`capsule ${path}: `);
      expect(r.stderr).toMatch(msg);
    }
    writeFileSync(join(dir, 'notjson.json'), '{');
    const nj = await cli(['replay', join(dir, 'notjson.json')], dir);
    expect(nj.code).toBe(2);
    expect(nj.stderr).toContain('is not JSON');
  });

  it('--config: nodes run the config\'s settings, ignored keys are listed once, replay needs no file', async () => {
    const dir = tempDir();
    const cfg = join(dir, 'sim.cfg');
    writeFileSync(cfg, CFG);
    const r = await cli(['run', '--seed', '2', '--ops', '40', '--config', cfg, '--test-break-invariant', '--capsule-dir', dir], dir);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toContain(`config:         ${cfg} (applied: BLKSIZE, COMPRESSION, HASHNAME, CACHESIZE, COMMIT_INTERVAL, SYNC_RELAX, REPLICATION_SECRET)`);
    expect(r.stdout).toContain('nodes:          BLKSIZE 8192, HASHNAME blake2b512, COMPRESSION lz4, DEDUPLICATION on, CACHESIZE 1 MiB, commit interval 1000 ms, SYNC_RELAX 1');
    const ignored = r.stderr.split('\n').filter((l) => l.includes('ignored in simulation'));
    expect(ignored).toHaveLength(1);
    expect(ignored[0]).toContain('BLOCKDATA_PATH, META_PATH (a path');
    expect(ignored[0]).toContain('LISTEN_IP (an address or port');
    expect(ignored[0]).toContain('ROTATE_REPLOG_SIZE, ROTATE_REPLOG_INTERVAL (batch mode only)');
    const capsule = JSON.parse(readFileSync(join(dir, 'lessfs-sim-failure-2.json'), 'utf8'));
    expect(capsule.options.config).toEqual({ name: cfg, text: CFG });
    expect(capsule.command).toContain(`--config ${cfg}`);
    rmSync(cfg);
    const rep = await cli(['replay', join(dir, 'lessfs-sim-failure-2.json')], dir);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect(rep.stdout).toContain('nodes:          BLKSIZE 8192');
    expect(rep.stdout).toContain('replay: reproduced exactly');
  });

  it('--config in batch mode: a campaign with the master rotating by itself passes', async () => {
    const dir = tempDir();
    const cfg = join(dir, 'sim.cfg');
    writeFileSync(cfg, CFG);
    const r = await cli(['run', '--seeds', '1..3', '--ops', '60', '--faults', 'all', '--mode', 'batch', '--config', cfg], dir);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`config ${cfg}`);
    expect(r.stdout).toContain('all seeds passed');
    expect(r.stderr).toContain('REPLICATION_SECRET (live mode only)');
  });

  it('a bad config exits 2 naming the key, the value and what is expected', async () => {
    const dir = tempDir();
    const cases: Array<[string, RegExp]> = [
      ['BLKSIZE=5000\n', /BLKSIZE=5000 is invalid: expected a power of two between 4096 and 131072 \(.*bad\.cfg line 1\)/],
      ['# ok\nCACHESIZE=lots\n', /CACHESIZE=lots is invalid: expected an integer between 1 and 65536 \(MiB\) \(.*bad\.cfg line 2\)/],
      ['COMPRESSION=zstd\n', /COMPRESSION=zstd is invalid: expected/],
    ];
    for (const [text, msg] of cases) {
      writeFileSync(join(dir, 'bad.cfg'), text);
      for (const args of [['run', '--seed', '1'], ['check-determinism', '--seeds', '1..1']]) {
        const r = await cli([...args, '--config', join(dir, 'bad.cfg')], dir);
        expect(r.code, text).toBe(2);
        expect(r.stderr).toMatch(msg);
        expect(r.stderr).not.toContain('Usage:');
      }
    }
    const missing = await cli(['run', '--seed', '1', '--config', join(dir, 'nope.cfg')], dir);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read --config .*nope\.cfg: no such file/);
  });

  it('a campaign with failures lists them and writes one capsule each', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seeds', '7..8', '--ops', '20', '--mode', 'batch', '--test-break-invariant', '--capsule-dir', dir], dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('failing seeds: 7, 8');
    expect(r.stdout).toContain(`reproduce: lessfs-sim replay ${join(dir, 'lessfs-sim-failure-8.json')}`);
    expect(JSON.parse(readFileSync(join(dir, 'lessfs-sim-failure-7.json'), 'utf8')).seed).toBe(7);
  });

  it('--jobs 2 runs a campaign in worker threads: the same ops and simulated time as one thread', async () => {
    const dir = tempDir();
    const args = ['run', '--seeds', '1..6', '--ops', '30', '--faults', 'swarm'];
    const [one, two] = await Promise.all([cli(args, dir), cli([...args, '--jobs', '2'], dir)]);
    for (const r of [one, two]) {
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain('all seeds passed');
      expect(r.stderr).toContain('6/6 seeds, 0 failed');
    }
    expect(two.stdout).toContain('2 worker threads');
    expect(one.stdout).not.toContain('worker threads');
    const totals = (out: string): string[] => ['ops', 'simulated seconds'].map((k) => new RegExp(`^  ${k} +(\\S+)$`, 'm').exec(out)?.[1] ?? `no ${k}`);
    expect(totals(two.stdout)).toEqual(totals(one.stdout));
  });

  it('--jobs 2: failing seeds are listed in order and each gets a capsule that replays', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seeds', '7..9', '--ops', '20', '--test-break-invariant', '--jobs', '2', '--capsule-dir', dir], dir);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toContain('failing seeds: 7, 8, 9');
    expect(r.stdout).not.toContain('NOT DETERMINISTIC');
    const path = join(dir, 'lessfs-sim-failure-9.json');
    expect(r.stdout).toContain(`reproduce: lessfs-sim replay ${path}`);
    const rep = await cli(['replay', path], dir);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect(rep.stdout).toContain('replay: reproduced exactly');
  });

  it('check-determinism reruns seeds and compares trace hashes (in this thread, and with --jobs 2 in workers)', async () => {
    const r = await cli(['check-determinism', '--seeds', '1..2', '--ops', '30', '--faults', 'all'], tempDir());
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('every trace hash equal on rerun');
    const j = await cli(['check-determinism', '--seeds', '1..4', '--ops', '30', '--faults', 'swarm', '--jobs', '2'], tempDir());
    expect(j.code, j.stdout + j.stderr).toBe(0);
    expect(j.stdout).toContain('2 worker threads): every trace hash equal on rerun');
    expect(j.stderr).toContain('4/4 seeds, 0 failed');
  });

  it('usage errors exit 2 with a clear message', async () => {
    const dir = tempDir();
    const cases: Array<[string[], RegExp]> = [
      [['run', '--seed', '1', '--faults', 'bogus'], /unknown fault profile 'bogus'/],
      [['run', '--seeds', '9..2'], /bad seed range '9\.\.2'/],
      [['run', '--seeds', '1-5'], /bad seed range '1-5'/],
      [['run', '--seed', '1', '--frob'], /Unknown option '--frob'/],
      [['run', '--seed', '1', '--mode', 'sideways'], /unknown mode 'sideways'/],
      [['run'], /run needs --seed S or --seeds A\.\.B/],
      [['replay'], /replay needs exactly one CAPSULE/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['replay', 'x.json', '--seed', '1'], /replay takes everything from the capsule: --seed is not allowed/],
      [['replay', 'x.json', '--config', 'a.cfg'], /replay takes everything from the capsule: --config is not allowed/],
      [['check-determinism', '--seeds', '1..2', '--shrink'], /check-determinism does not take --shrink/],
      [['run', '--seed', '1', '--shrink-budget', '5'], /--shrink-budget needs --shrink/],
      [['run', '--seed', '1', '--shrink', '--shrink-budget', '0'], /bad --shrink-budget '0'/],
      [['run', '--seed', '1', '--jobs', '2'], /--jobs .* needs --seeds A\.\.B/],
      [['run', '--seeds', '1..2', '--jobs', '0'], /bad --jobs '0' \(expected auto or an integer in 1\.\.256\)/],
      [['run', '--seeds', '1..2', '--jobs', 'many'], /bad --jobs 'many'/],
      [['check-determinism', '--seeds', '1..2', '--jobs', '0'], /bad --jobs '0'/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(args, dir);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(r.stderr).toContain('Usage:');
    }
    const h = await cli(['-h'], dir);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('lessfs-sim run --seed S');
    expect(h.stdout).toContain('--shrink');
    expect(h.stdout).toContain('--jobs N|auto');
    expect(h.stdout).toContain('--config CFG');
    expect(h.stdout).toContain('lessfs-sim replay-trace FILE');
    expect(h.stdout).not.toContain('Not yet available');
  });
});
