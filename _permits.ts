// The permits of a sink: a counting semaphore with two lines of waiters. An
// update whose key came free in `sequentialize()` takes a permit back with
// "high" priority, ahead of every new update waiting with "normal" priority,
// so a chain that gave its permit away is never overtaken by work that
// arrived after it. Not exported by mod.ts.

import { Queue } from "./_async.ts";

/** Which line a waiter joins: "high" is served before any "normal" one. */
export type Priority = "high" | "normal";

interface Waiter {
  /** Called with the permit; `undefined` once granted or withdrawn. */
  onGranted: (() => void) | undefined;
}

/** A semaphore whose permits are handed over synchronously, by priority, then first come first served. */
export class Permits {
  readonly #max: number;
  #free: number;
  readonly #high = new Queue<Waiter>();
  readonly #normal = new Queue<Waiter>();
  #waiting = 0;

  /** @param max How many permits there are (`Infinity`: never wait). */
  constructor(max: number) {
    this.#max = this.#free = max;
  }

  /** Permits nobody holds. */
  get free(): number {
    return this.#free;
  }

  /** Waiters not yet served (withdrawn ones excluded). */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Takes a permit for `onGranted`: at once (before returning) if one is
   * free, else as soon as `release()` hands one over to it. The caller owes
   * one `release()` per permit granted.
   *
   * @returns A function that withdraws the request if it is still waiting
   * (no permit is taken then); once granted it does nothing.
   */
  acquire(onGranted: () => void, priority: Priority = "normal"): () => void {
    if (this.#free > 0) {
      this.#free--;
      onGranted();
      return () => {};
    }
    const waiter: Waiter = { onGranted };
    (priority === "high" ? this.#high : this.#normal).push(waiter);
    this.#waiting++;
    return () => {
      if (waiter.onGranted === undefined) return;
      waiter.onGranted = undefined;
      this.#waiting--;
    };
  }

  /** Gives a permit back: to the first "high" waiter, else the first "normal" one, else it is free. */
  release(): void {
    const waiter = this.#next(this.#high) ?? this.#next(this.#normal);
    if (waiter === undefined) {
      // A release nobody acquired for must not make up a permit.
      if (this.#free < this.#max) this.#free++;
      return;
    }
    const onGranted = waiter.onGranted!;
    waiter.onGranted = undefined;
    this.#waiting--;
    onGranted();
  }

  /** The first waiter of `line` that still waits, dropping withdrawn ones. */
  #next(line: Queue<Waiter>): Waiter | undefined {
    for (let waiter = line.shift(); waiter !== undefined; waiter = line.shift()) {
      if (waiter.onGranted !== undefined) return waiter;
    }
    return undefined;
  }
}
