// The management port's freeze/defrost over the engine: stop new I/O at the
// gate, let operations in flight finish, commit, and hold until defrost.

import type { FsEngine } from './fs/engine.ts';
import type { IoGate } from './gate.ts';
import type { ManagementTarget } from './mgmt/server.ts';

export class FreezeControl implements ManagementTarget {
  constructor(
    private readonly engine: FsEngine,
    private readonly gate: IoGate,
    /** Work acknowledged but not yet in the engine (the mount's write-behind). */
    private readonly drainExtra: () => Promise<void> = () => Promise.resolve(),
  ) {}

  get frozen(): boolean {
    return this.gate.closed;
  }

  async freeze(): Promise<void> {
    this.gate.close();
    try {
      await this.gate.drain();
      await this.drainExtra();
      await this.engine.commit('freeze');
    } catch (err) {
      this.gate.open();
      throw err;
    }
  }

  defrost(): boolean {
    if (!this.gate.closed) return false;
    this.gate.open();
    return true;
  }

  lockStatus(): string[] {
    return this.engine.lockedInodes().map((ino) => `inode ${ino} locked (truncate)`);
  }
}
