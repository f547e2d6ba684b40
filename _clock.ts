// The clock behind every timer and timestamp of the module: `now`,
// `setTimeout` and `clearTimeout`, the globals by default. Tests swap in a
// fake one (tests/_clock.ts) to make time-driven behaviour exact.

/** An opaque handle of a pending timer (a number or a Node `Timeout`). */
export type TimerId = number | object;

/** What the module needs of a clock. */
export interface Clock {
  /** Milliseconds since the epoch, like `Date.now()`. */
  now(): number;
  /** Runs `callback` once after `milliseconds`. */
  setTimeout(callback: () => void, milliseconds: number): TimerId;
  /** Cancels a timer; `undefined` and finished timers are ignored. */
  clearTimeout(id: TimerId | undefined): void;
}

/**
 * The longest delay a JavaScript timer can count (2^31 − 1 ms, about 24.8
 * days). Deno and browsers fire a longer one at once, so every delay above
 * it means "no deadline" here.
 */
export const MAX_DELAY = 2 ** 31 - 1;

const globalClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, milliseconds) => setTimeout(callback, milliseconds),
  clearTimeout: (id) => clearTimeout(id as Parameters<typeof clearTimeout>[0]),
};

let current: Clock = globalClock;

/** The clock in use. */
export function clock(): Clock {
  return current;
}

/** Replaces the clock (for tests); returns a function that restores the previous one. */
export function useClock(replacement: Clock): () => void {
  const previous = current;
  current = replacement;
  return () => void (current = previous);
}

/**
 * Starts a timer unless `milliseconds` is beyond what a timer can count
 * (`Infinity` included): then it never fires and `undefined` is returned.
 */
export function startTimer(callback: () => void, milliseconds: number): TimerId | undefined {
  if (!(milliseconds <= MAX_DELAY)) return undefined;
  return current.setTimeout(callback, Math.max(0, milliseconds));
}

/** Cancels a timer started with `startTimer`. */
export function stopTimer(id: TimerId | undefined): void {
  if (id !== undefined) current.clearTimeout(id);
}
