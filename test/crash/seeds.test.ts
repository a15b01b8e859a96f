// Every regression seed of test/crash/seeds.ts passes and is deterministic.

import { describe, expect, it } from 'vitest';
import { runSimulation } from '../../src/sim/campaign.ts';
import { REGRESSION_SEEDS } from './seeds.ts';

describe('lessfs-sim regression seeds', () => {
  for (const r of REGRESSION_SEEDS) {
    const o = r.options;
    it(`seed ${o.seed} (${o.mode}, ${o.faults}): ${r.note}`, async () => {
      const first = await runSimulation(o);
      expect(first.problems, `reproduce: lessfs-sim run --seed ${o.seed} --ops ${o.ops} --faults ${o.faults} --mode ${o.mode}`).toEqual([]);
      const again = await runSimulation(o);
      expect(again.traceHash).toBe(first.traceHash);
    }, 60_000);
  }
});
