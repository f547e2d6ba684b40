/**
 * The update source: an async iterator of update batches pulled from an
 * `UpdateSupplier` (for a bot, `getUpdates`). The runner sets its pace, how
 * many updates the next batch may hold, from the sink's free capacity, and
 * the speed/traffic balance spaces calls out when batches come back small.
 *
 * ```ts
 * import { createSource } from "@grammyx/runner/source";
 *
 * const source = createSource({
 *   supply: async (batchSize, signal) => [{ update_id: 1 }],
 * });
 * ```
 *
 * @module
 */

import { delay } from "./_async.ts";
import { clock } from "./_clock.ts";
import { knownOptions, numberInRange, optionalObject } from "./_validate.ts";

/** Counters of a supplier, shown by `RunnerHandle.stats()`. */
export interface SupplierStats {
  /** Calls made to fetch updates (getUpdates), retries included. */
  calls: number;
  /** Calls that failed. */
  failures: number;
  /** `Date.now()` at the end of the last successful call, if any. */
  lastSuccessAt: number | undefined;
}

/**
 * Fetches batches of updates, e.g. with `getUpdates`. Write one to take
 * updates from somewhere else, such as a message queue.
 */
export interface UpdateSupplier<Y> {
  /**
   * Resolves with the next batch, at most `batchSize` updates. Must stop
   * (resolve or reject) when `signal` aborts.
   */
  supply: (batchSize: number, signal: AbortSignal) => Promise<Y[]>;
  /**
   * Tells the origin of the updates that everything handled so far is done
   * (for getUpdates: one last call whose `offset` confirms them). The runner
   * calls it once at the end of `stop()`, after the sink drained.
   */
  confirm?: (signal?: AbortSignal) => Promise<void>;
  /**
   * Whether `update`, if it never finishes, is supplied again after a
   * restart (for getUpdates: it is not confirmed yet, or a journal keeps
   * it). `stop()` uses it to tell which unfinished updates are lost.
   */
  willResend?: (update: Y) => boolean;
  /** Counters for `RunnerHandle.stats()`. */
  stats?: () => SupplierStats;
}

/**
 * An async iterator of update batches with an adjustable pace. Closing it
 * aborts the pending request; iterating `generator()` again reopens it.
 */
export interface UpdateSource<Y> {
  /** The async generator of batches; the same one until the source closes. */
  generator: () => AsyncGenerator<Y[]>;
  /** Sets how many updates the next batch may hold at most (a positive number). */
  setGeneratorPace: (pace: number) => void;
  /** Whether the source is pulling updates. */
  isActive: () => boolean;
  /** Stops pulling: aborts the pending request and ends the generator. */
  close: () => void;
  /** Forwards to the supplier's `confirm`, if it has one. */
  confirm?: (signal?: AbortSignal) => Promise<void>;
  /** Forwards to the supplier's `willResend`; `false` if it has none. */
  willResend?: (update: Y) => boolean;
  /** Forwards to the supplier's `stats`, if it has one. */
  stats?: () => SupplierStats | undefined;
}

/** How eagerly the source polls. */
export interface SourceOptions {
  /**
   * From `0` (fetch again as soon as a batch arrives: fastest replies) to
   * `1` (wait, up to `maxDelayMilliseconds`, until a full batch of 100 is
   * likely: fewest requests). In between, the source aims for batches of
   * `100 × speedTrafficBalance` updates, estimated from the recent rate.
   *
   * @default {0}
   */
  speedTrafficBalance?: number;
  /**
   * The longest pause between two fetches that the balance may cause.
   *
   * @default {500}
   */
  maxDelayMilliseconds?: number;
}

/**
 * Creates an update source that pulls batches from `supplier`.
 *
 * @param supplier Fetches the batches
 * @param options Speed/traffic balance
 * @returns An update source for `createRunner`
 * @throws {TypeError | RangeError} if an option is invalid or unknown
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSource } from "@grammyx/runner";
 *
 * let next = 1;
 * const source = createSource({
 *   supply: async (batchSize: number) =>
 *     Array.from({ length: Math.min(batchSize, 3) }, () => ({ update_id: next++ })),
 * });
 * source.setGeneratorPace(2);
 * const { value } = await source.generator().next();
 * assert.deepEqual(value, [{ update_id: 1 }, { update_id: 2 }]);
 * source.close();
 * ```
 */
export function createSource<Y>(
  supplier: UpdateSupplier<Y>,
  options: SourceOptions = {},
): UpdateSource<Y> {
  const subject = "Cannot create source";
  if (typeof supplier !== "object" || supplier === null || typeof supplier.supply !== "function") {
    throw new TypeError(`${subject} as 'supplier' must be an object with a supply function`);
  }
  optionalObject(subject, "options", options);
  knownOptions(subject, options, ["speedTrafficBalance", "maxDelayMilliseconds"]);
  const { speedTrafficBalance = 0, maxDelayMilliseconds = 500 } = options;
  numberInRange(subject, "speedTrafficBalance", speedTrafficBalance, 0, 1);
  numberInRange(subject, "maxDelayMilliseconds", maxDelayMilliseconds, 0);

  const pacer = new Pacer(speedTrafficBalance, maxDelayMilliseconds);
  let active = false;
  let pace = Infinity;
  let controller: AbortController | undefined;
  let current: AsyncGenerator<Y[]> | undefined;
  let epoch = 0;

  async function* pull(own: number): AsyncGenerator<Y[]> {
    const signal = (controller = new AbortController()).signal;
    active = true;
    try {
      while (active && !signal.aborted) {
        let batch: Y[];
        try {
          batch = await supplier.supply(pace, signal);
        } catch (error) {
          if (signal.aborted) return;
          throw error;
        }
        yield batch;
        const pause = pacer.next(batch.length);
        // An empty batch that came back at once must not starve the event loop.
        if (pause > 0 || batch.length === 0) await delay(pause, signal);
      }
    } finally {
      if (own === epoch) {
        active = false;
        current = undefined;
      }
    }
  }

  return {
    generator: () => (current ??= pull(++epoch)),
    setGeneratorPace: (newPace) => void (pace = newPace),
    isActive: () => active,
    close: () => {
      active = false;
      controller?.abort();
      current = undefined;
      epoch++;
      pace = Infinity;
      pacer.reset();
    },
    confirm: (signal) => supplier.confirm?.(signal) ?? Promise.resolve(),
    willResend: (update) => supplier.willResend?.(update) ?? false,
    stats: () => supplier.stats?.(),
  };
}

/**
 * The speed/traffic balance. It estimates the update rate over the last
 * batches and pauses just long enough for the next batch to reach its target
 * size, never longer than the maximum delay.
 */
class Pacer {
  static readonly #window = 16;
  readonly #target: number;
  readonly #maxDelay: number;
  #counts: number[] = [];
  #spans: number[] = [];
  #last = 0;

  constructor(balance: number, maxDelay: number) {
    this.#target = 100 * balance;
    this.#maxDelay = maxDelay;
  }

  reset(): void {
    this.#counts = [];
    this.#spans = [];
    this.#last = 0;
  }

  /** Records a batch of `count` and returns how long to pause (ms). */
  next(count: number): number {
    if (this.#target === 0) return 0;
    const now = clock().now();
    const span = this.#last === 0 ? 0 : now - this.#last;
    this.#last = now;
    this.#counts.push(count);
    this.#spans.push(span);
    if (this.#counts.length > Pacer.#window) {
      this.#counts.shift();
      this.#spans.shift();
    }
    if (count >= this.#target) return 0;
    const updates = this.#counts.reduce((sum, n) => sum + n, 0);
    const time = this.#spans.reduce((sum, n) => sum + n, 0);
    if (updates === 0 || time === 0) return this.#maxDelay;
    const perMillisecond = updates / time;
    const pause = this.#target / perMillisecond;
    return Math.min(this.#maxDelay, Math.max(0, pause));
  }
}
