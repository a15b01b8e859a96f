// Run a bench script in a child node (with tsx), bounded in time, killed on
// a signal to the parent. Its stderr passes through; its stdout is returned.

import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withLessfsNodeFlags } from '../src/cli/runtime-flags.ts';
import type { BenchContext } from './section.ts';

export const REPO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');

export function runScript(ctx: BenchContext, scriptPath: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    // With lessfs's own node flags: a child that runs the engine runs it as lessfs does.
    const child = spawn(process.execPath, [...withLessfsNodeFlags(['--expose-gc', '--import', 'tsx']), scriptPath, ...args], {
      cwd: REPO_DIR,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let exited = false;
    ctx.onCleanup(() => {
      if (!exited) child.kill('SIGKILL');
    });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(Object.assign(new Error(`${scriptPath} ran over ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      exited = true;
      clearTimeout(timer);
      const out = Buffer.concat(chunks).toString('utf8');
      if (code === 0) resolve(out);
      else reject(Object.assign(new Error(`${scriptPath} exited with ${code ?? signal}; stdout:\n${out}`), { code: 'ECHILD' }));
    });
  });
}
