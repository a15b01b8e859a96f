// lessfs-sim: one seeded simulation is deterministic, passes under every
// fault profile for a few seeds in both modes, reports a real divergence
// (a write behind the oracle's back) as problems; the CLI runs one seed and a
// campaign, writes a capsule on failure that `replay` reproduces exactly,
// checks determinism, and rejects bad usage with exit 2.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FAULT_PROFILES, reproduceCommand, runSimulation, simOptions } from '../../src/sim/campaign.ts';
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

  it('a write behind the oracle\'s back is found (live and batch)', async () => {
    for (const mode of ['live', 'batch'] as const) {
      const r = await runSimulation({ seed: 3, ops: 30, faults: 'none', mode, breakInvariant: true });
      expect(r.ok).toBe(false);
      expect(r.problems.join('\n')).toContain('/rogue');
    }
  });

  it('checks its options', () => {
    expect(() => simOptions({ seed: -1 })).toThrow(/seed/);
    expect(() => simOptions({ seed: 1, ops: 0 })).toThrow(/ops/);
    expect(() => simOptions({ seed: 1, faults: 'bogus' as never })).toThrow(/profile/);
    expect(simOptions({ seed: 1 })).toEqual({ seed: 1, ops: 200, faults: 'none', mode: 'live' });
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

  it('a failure prints the reproducing command and writes a capsule that replay reproduces', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seed', '4', '--ops', '30', '--test-break-invariant', '--capsule-dir', dir], dir);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toContain('result: FAILED');
    expect(r.stdout).toContain('reproduce: lessfs-sim run --seed 4 --ops 30 --faults none --mode live --test-break-invariant');
    const path = join(dir, 'lessfs-sim-failure-4.json');
    const capsule = JSON.parse(readFileSync(path, 'utf8'));
    expect(capsule.seed).toBe(4);
    expect(capsule.options).toEqual({ seed: 4, ops: 30, faults: 'none', mode: 'live', breakInvariant: true });
    expect(capsule.problems.length).toBeGreaterThan(0);
    expect(capsule.commit).toMatch(/^([0-9a-f]{40}|unknown)$/);
    expect(r.stdout).toContain(capsule.traceHash);
    const rep = await cli(['replay', path], dir);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect(rep.stdout).toContain('replay: reproduced exactly');
  });

  it('a campaign with failures lists them and writes one capsule each', async () => {
    const dir = tempDir();
    const r = await cli(['run', '--seeds', '7..8', '--ops', '20', '--mode', 'batch', '--test-break-invariant', '--capsule-dir', dir], dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('failing seeds: 7, 8');
    expect(r.stdout).toContain('reproduce: lessfs-sim run --seed 8 --ops 20 --faults none --mode batch --test-break-invariant');
    expect(JSON.parse(readFileSync(join(dir, 'lessfs-sim-failure-7.json'), 'utf8')).seed).toBe(7);
  });

  it('check-determinism reruns seeds and compares trace hashes', async () => {
    const r = await cli(['check-determinism', '--seeds', '1..2', '--ops', '30', '--faults', 'all'], tempDir());
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('every trace hash equal on rerun');
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
    expect(h.stdout).toContain('Not yet available');
  });
});
