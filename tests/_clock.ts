// A fake clock for exact tests of time-driven behaviour (timeouts, backoff,
// pacing). Install it with `using time = fakeTime()`; time moves only when
// the test calls `tick()` or `next()`.

import { type Clock, type TimerId, useClock } from "../_clock.ts";

interface Timer {
  id: TimerId;
  at: number;
  callback: () => void;
}

/** A clock whose time moves only when told to. */
export class FakeClock implements Clock, Disposable {
  #now: number;
  #nextId = 1;
  #timers: Timer[] = [];
  readonly #restore: () => void;

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
    this.#restore = useClock(this);
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, milliseconds: number): TimerId {
    const id = this.#nextId++;
    this.#timers.push({ id, at: this.#now + Math.max(0, milliseconds), callback });
    return id;
  }

  clearTimeout(id: TimerId | undefined): void {
    this.#timers = this.#timers.filter((timer) => timer.id !== id);
  }

  /** How many timers are pending. */
  get pending(): number {
    return this.#timers.length;
  }

  /** When the earliest pending timer fires, relative to now (undefined if none). */
  get nextIn(): number | undefined {
    const next = this.#earliest();
    return next === undefined ? undefined : next.at - this.#now;
  }

  /**
   * Moves time forward by `milliseconds`, firing every timer that falls due
   * on the way in order, and letting microtasks run after each.
   */
  async tick(milliseconds: number): Promise<void> {
    const end = this.#now + milliseconds;
    for (let timer = this.#earliest(); timer && timer.at <= end; timer = this.#earliest()) {
      this.#now = Math.max(this.#now, timer.at);
      this.#fire(timer);
      await settle();
    }
    this.#now = end;
    await settle();
  }

  /** Moves time to the earliest pending timer and fires it; false if none is pending. */
  async next(): Promise<boolean> {
    const timer = this.#earliest();
    if (timer === undefined) return false;
    this.#now = Math.max(this.#now, timer.at);
    this.#fire(timer);
    await settle();
    return true;
  }

  [Symbol.dispose](): void {
    this.#timers = [];
    this.#restore();
  }

  #earliest(): Timer | undefined {
    let earliest: Timer | undefined;
    for (const timer of this.#timers) if (!earliest || timer.at < earliest.at) earliest = timer;
    return earliest;
  }

  #fire(timer: Timer): void {
    this.#timers = this.#timers.filter((other) => other !== timer);
    timer.callback();
  }
}

/** Installs a fake clock until the returned object is disposed. */
export function fakeTime(start?: number): FakeClock {
  return new FakeClock(start);
}

/** Lets queued microtasks (and the promise chains they start) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}
