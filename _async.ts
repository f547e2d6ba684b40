// Small async primitives shared by the modules. Not exported by mod.ts.

import { startTimer, stopTimer } from "./_clock.ts";

/** A first-in first-out queue with O(1) push and shift. */
export class Queue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head === this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /**
   * Copies the items from `start` up to, not including, `end`, counted from
   * the first; like `Array.prototype.slice`, a negative index counts from the
   * end and indices past either end are clamped. The queue is unchanged.
   */
  slice(start = 0, end = this.length): T[] {
    const length = this.length;
    const clamp = (index: number) =>
      Math.min(Math.max(index < 0 ? length + index : index, 0), length);
    return this.#items.slice(this.#head + clamp(start), this.#head + clamp(end)) as T[];
  }
}

/**
 * Resolves after `milliseconds`, or as soon as `signal` aborts (it never
 * rejects). The timer is cleared either way, so nothing is left behind. A
 * delay longer than a timer can count (`Infinity` included) ends only with
 * the signal.
 */
export function delay(milliseconds: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      stopTimer(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = startTimer(done, milliseconds);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Resolves `true` once `promise` settles (either way), or `false` as soon as
 * `signal` aborts first; without a signal it just waits. Never rejects.
 */
export function settlesBefore(promise: Promise<unknown>, signal?: AbortSignal): Promise<boolean> {
  const settled = promise.then(() => true, () => true);
  if (signal === undefined) return settled;
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => resolve(false);
    signal.addEventListener("abort", onAbort, { once: true });
    settled.then((value) => {
      signal.removeEventListener("abort", onAbort);
      resolve(value);
    });
  });
}

/** Settles like `promise`, or rejects as soon as `signal` aborts (the promise is then ignored). */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
