// Freeze/defrost of all filesystem I/O (the management port's freeze): while
// closed, every new operation waits at the gate; operations already past it are
// counted so a freeze can wait for them to finish before it commits.

export class IoGate {
  private waiters: Array<() => void> = [];
  private closedFlag = false;
  private inflight = 0;
  private drainWaiters: Array<() => void> = [];
  /** Told of every close() and open() (the mount turns its table of listed attributes off while frozen). */
  onChange: ((closed: boolean) => void) | undefined;

  get closed(): boolean {
    return this.closedFlag;
  }

  get operationsInFlight(): number {
    return this.inflight;
  }

  close(): void {
    this.closedFlag = true;
    this.onChange?.(true);
  }

  open(): void {
    this.closedFlag = false;
    this.onChange?.(false);
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** undefined when open (go ahead now), else a promise of the next open(). */
  pass(): Promise<void> | undefined {
    if (!this.closedFlag) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  enter(): void {
    this.inflight++;
  }

  leave(): void {
    this.inflight--;
    // No new array per operation when nobody waits for the drain.
    if (this.inflight === 0 && this.drainWaiters.length > 0) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
  }

  /** Resolves when no operation is in flight. */
  drain(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }
}
