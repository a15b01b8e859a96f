// Store section: runs the standalone bench/store-bench.ts in a child and shows
// its lines. It has no targets; it is optional (`npm run bench -- store`).

import { join } from 'node:path';
import { REPO_DIR, runScript } from './child.ts';
import type { Section } from './section.ts';

export const storeSection: Section = {
  name: 'store',
  description: 'simulated store and LMDB commit latency (bench/store-bench.ts, no targets)',
  optional: true,
  async run(ctx) {
    ctx.log('store: running bench/store-bench.ts');
    const out = await runScript(ctx, join(REPO_DIR, 'bench', 'store-bench.ts'), [], 10 * 60_000);
    return { figures: [], targets: [], notes: out.split('\n').filter((l) => l.trim().length > 0) };
  },
};
