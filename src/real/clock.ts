// The real Clock: wall-clock time and Node timers.
//
// Timers are deliberately NOT unref()'d: a pending timer is often a commit (or a
// log fsync, a replication retry) that must still happen before the process may
// exit. An unref'd commit timer would let Node exit with acknowledged writes
// still in the write cache. Shutdown is explicit (unmount cancels its timers).

import type { Clock, TimerHandle } from '../core/drivers.ts';

/** setTimeout's limit: larger delays fire after 1 ms in Node, so longer timers are chained. */
const TIMEOUT_MS_MAX = 2 ** 31 - 1;

function setTimer(delayMs: number, fn: () => void): TimerHandle {
  if (!Number.isFinite(delayMs) || delayMs < 0) throw new RangeError(`setTimer: bad delay ${delayMs} ms`);
  let remainingMs = delayMs;
  let cancelled = false;
  let timer: NodeJS.Timeout;
  const arm = (): void => {
    const stepMs = Math.min(remainingMs, TIMEOUT_MS_MAX);
    remainingMs -= stepMs;
    timer = setTimeout(() => {
      if (cancelled) return;
      if (remainingMs > 0) {
        arm();
        return;
      }
      cancelled = true; // fired: a later cancel() is a no-op
      fn();
    }, stepMs);
  };
  arm();
  return {
    cancel: () => {
      if (cancelled) return;
      cancelled = true;
      clearTimeout(timer);
    },
  };
}

/** A real clock with its own monotonic floor (tests use a fresh one to fake the wall clock). */
export function createRealClock(): Clock {
  let lastNowMs = 0;
  return Object.freeze({
    nowMs(): number {
      // Date.now() can step backwards (NTP, an admin setting the clock); callers are
      // promised a monotonic clock, so time holds still until the wall clock catches up.
      const now = Date.now();
      if (now > lastNowMs) lastNowMs = now;
      return lastNowMs;
    },
    setTimer,
  });
}

export const realClock: Clock = createRealClock();
