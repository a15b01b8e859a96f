import { createHash, type Hash } from 'node:crypto';
import { nextTick } from 'node:process';
import type { Clock, TimerHandle } from '../core/drivers.ts';
import { SimRng } from './rng.ts';

/**
 * A node's lifetime. Events scheduled under a domain are dropped once the
 * domain dies (crash or power loss), so nothing of a dead incarnation runs.
 */
export class Domain {
  alive = true;
  constructor(readonly name: string) {}
  kill(): void {
    this.alive = false;
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

/** One run() call in progress: what ends it, and its promise. */
interface RunLoop {
  untilMs: number | undefined;
  done: (() => boolean) | undefined;
  resolve: () => void;
  reject: (err: unknown) => void;
  steps: number;
}

/** A scheduled event; it is its own cancel handle (no closure per event). */
class SimEvent implements TimerHandle {
  cancelled = false;
  constructor(
    readonly timeMs: number,
    readonly seq: number,
    readonly label: string,
    readonly fn: () => void,
    readonly domain: Domain | undefined,
  ) {}

  cancel(): void {
    this.cancelled = true;
  }
}

function less(x: SimEvent, y: SimEvent): boolean {
  return x.timeMs < y.timeMs || (x.timeMs === y.timeMs && x.seq < y.seq);
}

export interface SchedulerOptions {
  seed: number | bigint | string;
  /** Hard bound on events per run call, so a livelock fails instead of hanging. */
  stepsMax?: number;
}

const TRACE_FLUSH_CHARS = 1 << 16;
/** Steps of run() (events, and the start of each call) between two real turns of the event loop. */
const EVENT_LOOP_TURN_STEPS = 1024;

/**
 * Virtual time and one event queue ordered by (time, sequence). All sim drivers
 * schedule through it; every event is folded into a trace hash, so the same
 * seed must give the same hash.
 */
export class Scheduler {
  private heap: SimEvent[] = [];
  private seq = 0;
  private now = 0;
  private readonly traceHasher: Hash = createHash('sha256');
  /** Trace text not yet hashed: hashing it in large pieces gives the same hash as line by line, faster. */
  private traceText = '';
  private traceEvents = 0;
  /** The time of the last event traced, and its text with the space after it. */
  private traceTimeMs = Number.NaN;
  private traceTimeText = '';
  /** Pumps since the last real turn of the event loop. */
  private sinceLoopTurn = 0;
  /** run() calls in progress, in the order they started. */
  private readonly loops: RunLoop[] = [];
  /** A pump is queued. */
  private pumpQueued = false;
  private readonly pumpNow = (): void => this.pump();
  private readonly pumpAfterTick = (): void => {
    nextTick(this.pumpNow);
  };
  /** Events run so far (crash points are counted in these). */
  stepsRun = 0;
  readonly rng: SimRng;
  readonly stepsMax: number;
  /** Optional sink for the event trace (for divergence reports): every line. */
  traceSink: ((line: string) => void) | undefined;
  /**
   * Optional sink for the lines components record with trace() (what
   * happened: faults, commits...), without the line of each event run.
   */
  noteSink: ((line: string) => void) | undefined;

  constructor(options: SchedulerOptions) {
    this.rng = new SimRng(options.seed);
    this.stepsMax = options.stepsMax ?? 50_000_000;
  }

  nowMs(): number {
    return this.now;
  }

  schedule(delayMs: number, label: string, fn: () => void, domain?: Domain): TimerHandle {
    if (!(delayMs >= 0) || !Number.isFinite(delayMs)) throw new RangeError(`schedule: bad delay ${delayMs} for ${label}`);
    const ev = new SimEvent(this.now + delayMs, this.seq++, label, fn, domain);
    this.push(ev);
    return ev;
  }

  /** Record something that happened in the trace hash. */
  trace(line: string): void {
    this.traceLine(line);
    this.noteSink?.(line);
  }

  private traceLine(line: string): void {
    this.traceEvents++;
    this.traceText += line + '\n';
    if (this.traceText.length >= TRACE_FLUSH_CHARS) this.flushTrace();
    this.traceSink?.(line);
  }

  private flushTrace(): void {
    this.traceHasher.update(this.traceText);
    this.traceText = '';
  }

  traceHash(): string {
    this.flushTrace();
    return `${this.traceHasher.copy().digest('hex').slice(0, 16)}:${this.traceEvents}`;
  }

  pending(): number {
    return this.heap.length;
  }

  /** A Clock whose timers die with the domain. */
  clock(domain?: Domain): Clock {
    return {
      nowMs: () => this.now,
      setTimer: (delayMs, fn) => this.schedule(delayMs, 'timer', fn, domain),
    };
  }

  /** Run one event; false when the queue is empty. */
  stepSync(): boolean {
    for (;;) {
      const ev = this.pop();
      if (!ev) return false;
      if (ev.cancelled || (ev.domain && !ev.domain.alive)) continue;
      this.now = ev.timeMs;
      this.stepsRun++;
      // Events often share an instant: its text is made once.
      if (ev.timeMs !== this.traceTimeMs) {
        this.traceTimeMs = ev.timeMs;
        this.traceTimeText = `${ev.timeMs} `;
      }
      this.traceLine(this.traceTimeText + ev.label);
      ev.fn();
      return true;
    }
  }

  /**
   * Run events (letting promise continuations settle after each) until `done()`
   * holds, the queue empties, or virtual time passes untilMs.
   *
   * One pump serves every run() in progress (a run() awaited through
   * runUntilSettled(), as tests do, makes two): after each event, a microtask
   * queues a tick that looks at every caller's end condition and then runs the
   * next event, so each check sees the previous event's promise continuations,
   * chains included, all run (what drain() waits for), without a promise per
   * event; a caller whose run() ended gets its continuations settled before
   * the next event too. No event runs past any caller's untilMs. Every
   * EVENT_LOOP_TURN_STEPS pumps (counted across calls: a campaign makes
   * thousands of short ones) a real turn of the event loop instead, for the
   * host's signals, timers and I/O (nothing of the simulation runs there).
   */
  run(options: { untilMs?: number; done?: () => boolean } = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.loops.push({ untilMs: options.untilMs, done: options.done, resolve, reject, steps: 0 });
      // What is pending settles first.
      this.queuePump();
    });
  }

  private queuePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    if (++this.sinceLoopTurn >= EVENT_LOOP_TURN_STEPS) {
      this.sinceLoopTurn = 0;
      setImmediate(this.pumpNow);
    } else {
      // A reaction on a settled promise is a microtask too, without the
      // AsyncResource node's queueMicrotask() makes for each call.
      void RESOLVED.then(this.pumpAfterTick);
    }
  }

  private endLoop(i: number, err?: unknown): void {
    const [loop] = this.loops.splice(i, 1);
    if (err === undefined) loop.resolve();
    else loop.reject(err);
  }

  private pump(): void {
    this.pumpQueued = false;
    if (this.loops.length === 0) return;
    let ended = false;
    const ev = this.peek();
    for (let i = this.loops.length - 1; i >= 0; i--) {
      const loop = this.loops[i];
      try {
        if (loop.steps > this.stepsMax) throw new Error(`scheduler: more than ${this.stepsMax} events (livelock?)`);
        if (!(loop.done?.() || !ev)) continue;
      } catch (err) {
        this.endLoop(i, err);
        ended = true;
        continue;
      }
      this.endLoop(i);
      ended = true;
    }
    if (!ended && ev) {
      // Callers whose untilMs the next event passes: the earliest ends (virtual time moves to it).
      let until = Number.POSITIVE_INFINITY;
      for (const l of this.loops) if (l.untilMs !== undefined && ev.timeMs > l.untilMs && l.untilMs < until) until = l.untilMs;
      if (until !== Number.POSITIVE_INFINITY) {
        this.now = Math.max(this.now, until);
        for (let i = this.loops.length - 1; i >= 0; i--) if (this.loops[i].untilMs === until) this.endLoop(i);
        ended = true;
      }
    }
    if (this.loops.length === 0) return;
    if (ended) {
      // What awaited the ended calls runs before anything else is decided.
      this.queuePump();
      return;
    }
    try {
      this.stepSync();
    } catch (err) {
      // An event threw: every caller hears it.
      while (this.loops.length > 0) this.endLoop(this.loops.length - 1, err);
      return;
    }
    for (const l of this.loops) l.steps++;
    this.queuePump();
  }

  /** Run until the promise settles; fails if the queue empties first. */
  async runUntilSettled<T>(promise: Promise<T>, what = 'operation'): Promise<T> {
    let settled = false;
    let value: T | undefined;
    let error: unknown;
    let failed = false;
    promise.then(
      (v) => { settled = true; value = v; },
      (e) => { settled = true; failed = true; error = e; },
    );
    await this.run({ done: () => settled });
    if (!settled) throw new Error(`scheduler: ${what} never completed (event queue empty at ${this.now} ms)`);
    if (failed) throw error;
    return value as T;
  }

  private peek(): SimEvent | undefined {
    while (this.heap.length > 0) {
      const top = this.heap[0];
      if (top.cancelled || (top.domain && !top.domain.alive)) {
        this.pop();
        continue;
      }
      return top;
    }
    return undefined;
  }

  private push(ev: SimEvent): void {
    const h = this.heap;
    let i = h.length;
    h.push(ev);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p];
      if (!less(ev, parent)) break;
      h[i] = parent;
      i = p;
    }
    h[i] = ev;
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop() as SimEvent;
    const n = h.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const m = r < n && less(h[r], h[l]) ? r : l;
        if (!less(h[m], last)) break;
        h[i] = h[m];
        i = m;
      }
      h[i] = last;
    }
    return top;
  }
}

/** Let every pending promise continuation run (a macrotask boundary). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Let every pending promise continuation run, chains included, without a turn
 * of the event loop (which costs more than most events): a nextTick queued
 * from inside a microtask runs only once the microtask queue is empty (Node
 * drains it before the tick queue), and its continuation after that. Nothing
 * in the simulation uses ticks, immediates or timers of its own, so this
 * settles exactly what settle() does.
 */
export function drain(): Promise<void> {
  return new Promise((resolve) => queueMicrotask(() => nextTick(resolve)));
}
