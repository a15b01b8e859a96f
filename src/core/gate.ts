// Freeze/defrost of all filesystem I/O (the management port's freeze): while
// closed, every operation waits at the gate; defrost lets them through in order.

export class IoGate {
  private waiters: Array<() => void> = [];
  private closedFlag = false;

  get closed(): boolean {
    return this.closedFlag;
  }

  close(): void {
    this.closedFlag = true;
  }

  open(): void {
    this.closedFlag = false;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves at once when open, else at the next open(). */
  pass(): Promise<void> | undefined {
    if (!this.closedFlag) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
