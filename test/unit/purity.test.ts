// src/core must stay deterministic and driver-agnostic: no node built-ins, no
// ambient time, chance, timers or process, nothing from src/sim or src/real.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const CORE = join(import.meta.dirname, '../../src/core');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Source without comments and string contents, so prose can't trip the check. */
function code(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '')
    .replace(/`(?:\\.|[^`\\])*`/g, '``');
}

const FORBIDDEN: Array<[RegExp, string]> = [
  [/from\s+['"]node:/, 'imports a node: built-in'],
  [/from\s+['"](fs|net|os|timers|child_process|worker_threads|crypto|zlib|path|events)(\/[a-z]+)?['"]/, 'imports a node built-in'],
  [/\brequire\s*\(/, 'uses require()'],
  [/import\s*\(/, 'uses dynamic import()'],
  [/from\s+['"][./]+\/(sim|real|cli)\//, 'imports src/sim, src/real or src/cli'],
  [/\bDate\b/, 'uses Date'],
  [/\bMath\.random\b/, 'uses Math.random'],
  [/\b(setTimeout|setInterval|setImmediate|clearTimeout|clearInterval|queueMicrotask)\b/, 'uses a timer'],
  [/\bprocess\b/, 'uses process'],
  [/\bperformance\b/, 'uses performance'],
  [/\bBuffer\b/, 'uses Buffer (core uses Uint8Array)'],
  [/\bglobalThis\b/, 'uses globalThis'],
];

describe('src/core purity', () => {
  const sources = files(CORE);

  it('has sources to check', () => {
    expect(sources.length).toBeGreaterThan(5);
  });

  it.each(sources.map((p) => [relative(CORE, p), p]))('%s touches nothing ambient', (_name, path) => {
    const text = code(readFileSync(path, 'utf8'));
    const violations = FORBIDDEN.filter(([re]) => re.test(text)).map(([, why]) => why);
    expect(violations).toEqual([]);
  });

  it('the checker catches each forbidden pattern', () => {
    const samples = [
      "import { readFileSync } from 'node:fs';",
      "import net from 'net';",
      'const t = Date.now();',
      'const r = Math.random();',
      'setTimeout(() => 1, 5);',
      'process.exit(1);',
      "import { SimRng } from '../sim/rng.ts';",
      "import { realClock } from '../../real/clock.ts';",
      'const b = Buffer.from([1]);',
    ];
    for (const s of samples) expect(FORBIDDEN.some(([re]) => re.test(code(s))), s).toBe(true);
    expect(FORBIDDEN.some(([re]) => re.test(code('// Date.now() is banned here\nconst x = 1;')))).toBe(false);
  });
});
