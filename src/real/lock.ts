// One process at a time per filesystem: a lock file in META_PATH holding the
// owner's pid. A lock whose pid is gone (killed process) is stale and taken over.

import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../core/errors.ts';

export const LOCK_FILE = 'lessfs.lock';

export interface FsLock {
  readonly path: string;
  release(): void;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
  // A killed process can linger as a zombie until its parent reaps it: dead.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return false;
    throw err;
  }
}

/** Take the lock of the filesystem whose metadata lives in metaPath. */
export function acquireLock(metaPath: string, purpose: string): FsLock & { stalePid?: number } {
  const path = join(metaPath, LOCK_FILE);
  let stalePid: number | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, `${process.pid} ${purpose}\n`);
      closeSync(fd);
      let released = false;
      return {
        path,
        stalePid,
        release: () => {
          if (released) return;
          released = true;
          try {
            unlinkSync(path);
          } catch (err) {
            if ((err as { code?: string }).code !== 'ENOENT') throw err;
          }
        },
      };
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT') throw new FormatError('ENOTFORMATTED', `META_PATH ${metaPath} does not exist`);
      if (code !== 'EEXIST') throw err;
    }
    let owner = '';
    try {
      owner = readFileSync(path, 'utf8').trim();
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') continue; // released meanwhile
      throw err;
    }
    const pid = Number(owner.split(' ')[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
      throw new FormatError('ELOCKED', `the filesystem in ${metaPath} is in use by process ${pid} (${owner.split(' ').slice(1).join(' ') || 'unknown'}); unmount it first`);
    }
    // The owner died without releasing it (kill -9): the lock is stale.
    stalePid = Number.isInteger(pid) ? pid : undefined;
    unlinkSync(path);
  }
  throw new FormatError('ELOCKED', `could not take the lock ${path}`);
}
