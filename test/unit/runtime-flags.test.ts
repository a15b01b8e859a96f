// The node flags lessfs runs with are the same wherever it starts: the shebang
// of bin/lessfs.js (which cannot import them), the daemon child and the bench.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LESSFS_NODE_FLAGS, withLessfsNodeFlags } from '../../src/cli/runtime-flags.ts';

const ROOT = join(fileURLToPath(new URL('../..', import.meta.url)));

describe('lessfs node flags', () => {
  it('bin/lessfs.js starts node with exactly LESSFS_NODE_FLAGS', () => {
    const shebang = readFileSync(join(ROOT, 'bin', 'lessfs.js'), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${LESSFS_NODE_FLAGS.join(' ')}`);
  });

  it('adds what execArgv lacks and keeps what the user set', () => {
    expect(withLessfsNodeFlags(['--import', 'tsx'])).toEqual([...LESSFS_NODE_FLAGS, '--import', 'tsx']);
    expect(withLessfsNodeFlags(['--max-semi-space-size=32'])).toEqual(['--max-semi-space-size=32']);
  });
});
