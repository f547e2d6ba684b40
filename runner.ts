/**
 * The runner: pulls batches from a source, hands them to a sink, passes the
 * sink's free capacity back as the source's pace, and owns the lifecycle.
 * `stop()` stops fetching, waits for every update already taken, confirms
 * them, and only then resolves.
 *
 * ```ts
 * import { createRunner } from "@grammyx/runner/runner";
 * import { createSource } from "@grammyx/runner/source";
 * import { createConcurrentSink } from "@grammyx/runner/sink";
 *
 * const runner = createRunner(
 *   createSource({ supply: async () => [] }),
 *   createConcurrentSink({ consume: async () => {} }, async () => {}),
 * );
 * ```
 *
 * @module
 */

import { delay } from "./_async.ts";
import type { SinkStats, UpdateSink } from "./sink.ts";

export type { SinkStats };
import type { UpdateSource } from "./source.ts";

/** Options of `stop()`. */
export interface StopOptions {
  /**
   * Resolve after this many milliseconds at the latest, even if updates are
   * still running; they are listed in the result.
   *
   * @default {undefined} (wait for every update)
   */
  timeout?: number;
}

/** What `stop()` resolves with. */
export interface StopResult<Y> {
  /** Updates still unfinished when the stop deadline passed (empty after a full drain). */
  unfinished: Y[];
}

/**
 * A snapshot of the runner, cheap enough to take every second: the sink's
 * counters (handled, failed, timed out, running, waiting, pending) and the
 * source's.
 */
export interface RunnerStats extends Omit<SinkStats, "oldestPendingSince"> {
  /** Updates taken from the source. */
  fetched: number;
  /** getUpdates calls, retries included. */
  getUpdatesCalls: number;
  /** getUpdates calls that failed. */
  getUpdatesFailures: number;
  /** `Date.now()` of the last successful getUpdates, if any (for a stall watchdog). */
  lastPollAt: number | undefined;
  /** Milliseconds since the oldest unfinished update was taken (0 if none). */
  lag: number;
}

/** Controls a runner: start, stop, and look inside. */
export interface RunnerHandle<Y = unknown> {
  /** Starts fetching (no-op while running; after a stop in progress, restarts once it is done). */
  start: () => void;
  /**
   * Stops fetching (aborting the pending long poll), waits for every update
   * already taken to finish, confirms them, and resolves. Calling it again
   * returns the same promise; calling it when not running resolves at once.
   */
  stop: (options?: StopOptions) => Promise<StopResult<Y>>;
  /** Updates taken and not finished. */
  size: () => number;
  /**
   * A promise that settles when the runner ends: resolves after `stop()`,
   * rejects with the fatal error (e.g. a `PollingError`). `undefined` when
   * not running.
   */
  task: () => Promise<void> | undefined;
  /** Whether the runner is polling or draining. */
  isRunning: () => boolean;
  /** Counters of the source and the sink. */
  stats: () => RunnerStats;
}

/**
 * Creates a runner that pulls updates from `source` into `sink`. Call
 * `start()` on the result (`run()` does that for you).
 *
 * @param source Where updates come from
 * @param sink Where updates go
 * @returns A handle to start, stop and watch the runner
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createConcurrentSink, createRunner, createSource } from "@grammyx/runner";
 *
 * const queue = [[{ update_id: 1 }, { update_id: 2 }]];
 * const seen: number[] = [];
 * const runner = createRunner(
 *   createSource({ supply: async () => queue.shift() ?? [] }),
 *   createConcurrentSink({ consume: async (u: { update_id: number }) => void seen.push(u.update_id) }, async () => {}),
 * );
 * runner.start();
 * while (seen.length < 2) await new Promise((ok) => setTimeout(ok, 1));
 * await runner.stop();
 * assert.deepEqual(seen, [1, 2]);
 * assert.equal(runner.isRunning(), false);
 * ```
 */
export function createRunner<Y>(source: UpdateSource<Y>, sink: UpdateSink<Y>): RunnerHandle<Y> {
  const runner = new Runner(source, sink);
  return {
    start: () => runner.start(),
    stop: (options) => runner.stop(options),
    size: () => sink.size(),
    task: () => runner.task(),
    isRunning: () => runner.isRunning(),
    stats: () => runner.stats(),
  };
}

class Runner<Y> {
  readonly #source: UpdateSource<Y>;
  readonly #sink: UpdateSink<Y>;
  #state: "idle" | "running" | "stopping" = "idle";
  #epoch = 0;
  #fetched = 0;
  #pulling: Promise<void> = Promise.resolve();
  #task: PromiseWithResolvers<void> | undefined;
  #stopping: Promise<StopResult<Y>> | undefined;
  #restart = false;

  constructor(source: UpdateSource<Y>, sink: UpdateSink<Y>) {
    if (typeof source?.generator !== "function") {
      throw new TypeError(
        "Cannot create runner as 'source' must be an update source (see createSource)",
      );
    }
    if (typeof sink?.handle !== "function") {
      throw new TypeError(
        "Cannot create runner as 'sink' must be an update sink (see createConcurrentSink)",
      );
    }
    this.#source = source;
    this.#sink = sink;
  }

  start(): void {
    if (this.#state === "running") return;
    if (this.#state === "stopping") {
      this.#restart = true;
      return;
    }
    this.#state = "running";
    this.#task = Promise.withResolvers<void>();
    const epoch = ++this.#epoch;
    this.#pulling = this.#pull(epoch).catch((error) => this.#fail(epoch, error));
  }

  stop(options: StopOptions = {}): Promise<StopResult<Y>> {
    const { timeout } = options;
    if (
      timeout !== undefined && (typeof timeout !== "number" || Number.isNaN(timeout) || timeout < 0)
    ) {
      throw new RangeError(
        `Cannot stop runner as 'timeout' must be a number of at least 0: current value is ${
          String(timeout)
        }`,
      );
    }
    this.#restart = false;
    if (this.#stopping !== undefined) return this.#stopping;
    if (this.#state === "idle") return Promise.resolve({ unfinished: [] });
    return this.#end(timeout, undefined);
  }

  task(): Promise<void> | undefined {
    return this.#state === "idle" ? undefined : this.#task?.promise;
  }

  isRunning(): boolean {
    return this.#state !== "idle";
  }

  stats(): RunnerStats {
    const sink = this.#sink.stats?.();
    const source = this.#source.stats?.();
    const pending = sink?.pending ?? this.#sink.size();
    const oldest = sink?.oldestPendingSince;
    return {
      fetched: this.#fetched,
      handled: sink?.handled ?? 0,
      failed: sink?.failed ?? 0,
      timedOut: sink?.timedOut ?? 0,
      running: sink?.running ?? pending,
      waitingForKey: sink?.waitingForKey ?? 0,
      waitingForSlot: sink?.waitingForSlot ?? 0,
      pending,
      getUpdatesCalls: source?.calls ?? 0,
      getUpdatesFailures: source?.failures ?? 0,
      lastPollAt: source?.lastSuccessAt,
      lag: oldest === undefined ? 0 : Date.now() - oldest,
    };
  }

  async #pull(epoch: number): Promise<void> {
    // The first batch must fit the sink too: an empty batch asks for its capacity.
    this.#source.setGeneratorPace(await this.#sink.handle([]));
    if (epoch !== this.#epoch || this.#state !== "running") return;
    for await (const batch of this.#source.generator()) {
      this.#fetched += batch.length;
      const capacity = await this.#sink.handle(batch);
      if (epoch !== this.#epoch || this.#state !== "running") break;
      this.#source.setGeneratorPace(capacity);
    }
    // A finite source ran dry: end as if stopped.
    if (epoch === this.#epoch && this.#state === "running") void this.stop();
  }

  /** A fatal error of the source: drain what was taken, then reject `task()`. */
  #fail(epoch: number, error: unknown): void {
    if (epoch !== this.#epoch || this.#state !== "running") return;
    void this.#end(undefined, { error });
  }

  /**
   * Ends the run, for a `stop()` or a fatal error: stops fetching, waits for
   * the sink (up to `timeout`), confirms (not after a fatal error), closes
   * what the sink adopted, then settles `task()`. A `start()` meanwhile
   * restarts once this is done.
   */
  #end(timeout: number | undefined, fatal: { error: unknown } | undefined) {
    this.#state = "stopping";
    this.#epoch++;
    this.#source.close();
    this.#stopping = this.#drain(timeout, fatal === undefined)
      .then((result) => {
        this.#state = "idle";
        if (fatal === undefined) this.#task?.resolve();
        else this.#task?.reject(fatal.error);
        return result;
      })
      .finally(() => {
        this.#stopping = undefined;
        if (this.#restart) {
          this.#restart = false;
          this.start();
        }
      });
    return this.#stopping;
  }

  async #drain(timeout: number | undefined, confirm: boolean): Promise<StopResult<Y>> {
    const drained = this.#pulling.then(() => this.#idle());
    let unfinished: Y[] = [];
    if (timeout === undefined) {
      await drained;
    } else {
      const deadline = new AbortController();
      const inTime = await Promise.race([
        drained.then(() => true),
        delay(timeout, deadline.signal).then(() => false),
      ]);
      deadline.abort();
      if (!inTime) unfinished = this.#sink.snapshot();
    }
    if (confirm) await this.#source.confirm?.();
    await this.#sink.close?.();
    return { unfinished };
  }

  /** Resolves once the sink has nothing running. */
  async #idle(): Promise<void> {
    if (this.#sink.idle !== undefined) return await this.#sink.idle();
    while (this.#sink.size() > 0) await delay(10);
  }
}
