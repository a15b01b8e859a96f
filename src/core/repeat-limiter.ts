// One log line per kind of repeated event per interval: a full disk fails
// every queued write of a copy, thousands of files in a second, and the log
// must stay one line per event kind, not per file (DEBUG=1).

export class RepeatLimiter {
  private readonly last = new Map<string, { atMs: number; held: number }>();

  constructor(
    private readonly nowMs: () => number,
    private readonly everyMs = 60_000,
  ) {}

  /**
   * The line to log for an event of this kind now (with how many like it were
   * held back since the last one), or undefined to hold it back.
   */
  pass(kind: string, line: string): string | undefined {
    const now = this.nowMs();
    const prev = this.last.get(kind);
    if (prev && now - prev.atMs < this.everyMs) {
      prev.held++;
      return undefined;
    }
    this.last.set(kind, { atMs: now, held: 0 });
    if (!prev || prev.held === 0) return line;
    return `${line} (and ${prev.held} more like it in the ${Math.round((now - prev.atMs) / 1000)} s before)`;
  }
}
