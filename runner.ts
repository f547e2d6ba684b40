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

import { delay, settlesBefore } from "./_async.ts";
import { clock, startTimer, stopTimer, type TimerId } from "./_clock.ts";
import { knownOptions, numberInRange, optionalObject } from "./_validate.ts";
import type { SinkStats, UpdateSink } from "./sink.ts";
import type { UpdateSource } from "./source.ts";

export type { SinkStats };

/** Options of `stop()`. */
export interface StopOptions {
  /**
   * Resolve after this many milliseconds at the latest, even if updates are
   * still running or waiting; they are listed in the result. The deadline
   * bounds the whole stop: the drain gets all but a reserve (a tenth of the
   * time, at least 100 ms, at most 1 s, never more than half) in which the
   * runner confirms to Telegram and records finished updates in the journal. `Infinity`, or more than a timer can
   * count (2^31 − 1 ms), means no deadline. A later `stop({ timeout })`
   * during a stop can bring the deadline forward, never push it back.
   *
   * @default {undefined} (wait for every update)
   */
  timeout?: number;
}

/**
 * What `stop()` resolves with: after a full drain, three empty lists. When
 * the deadline passed first, what was not finished, split by what happens
 * to it once the process exits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Bot } from "grammy";
 * import { run } from "@grammyx/runner";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 *
 * await using api = await FakeBotApi.start();
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * let release = () => {};
 * const slow = new Promise<void>((resolve) => release = resolve);
 * bot.on("message", () => slow); // a handler that outlives the deadline
 * const [id] = api.pushMessages(1);
 *
 * const handle = run(bot, { runner: { fetch: { timeout: 1 } } });
 * while (handle.stats().running === 0) await new Promise((ok) => setTimeout(ok, 5));
 * const { unfinished, lost, redelivered } = await handle.stop({ timeout: 200 });
 * assert.deepEqual(unfinished.map((u) => u.update_id), [id]);
 * // The default "fetched" mode had confirmed it: persist `lost` before exiting.
 * assert.deepEqual(lost.map((u) => u.update_id), [id]);
 * assert.deepEqual(redelivered, []);
 * release();
 * await handle.task();
 * ```
 */
export interface StopResult<Y> {
  /**
   * Updates whose middleware had not ended at the deadline (running, timed
   * out and still running, waiting for their key, or not started), in the
   * order they were taken. Their middleware may still be running when
   * `stop()` resolves. One that ended meanwhile and will not be delivered
   * again is left out.
   */
  unfinished: Y[];
  /**
   * Of `unfinished`, those that no one will deliver again: Telegram forgot
   * them (the default `"fetched"` mode confirms a batch with the next poll)
   * and no journal keeps them. Log or persist them before the process exits,
   * or they are lost.
   */
  lost: Y[];
  /**
   * Of `unfinished`, those that come again on the next start: Telegram still
   * holds them (`"handled"` mode, or not confirmed yet) or the journal does.
   */
  redelivered: Y[];
}

/**
 * A snapshot of the runner, cheap enough to take every second: the sink's
 * counters (handled, failed, timed out, running, waiting, pending) and the
 * source's.
 *
 * @example
 * ```ts ignore
 * const handle = run(bot);
 * setInterval(() => {
 *   const { handled, failed, running, pending, lag } = handle.stats();
 *   console.log(`handled ${handled}, failed ${failed}, running ${running}, pending ${pending}, lag ${lag} ms`);
 *   // A stalled bot: nothing polled for a minute.
 *   if (Date.now() - (handle.stats().lastPollAt ?? Date.now()) > 60_000) console.error("stalled");
 * }, 1_000);
 * ```
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

/**
 * Controls a runner: start, stop, and look inside. `run()` returns one,
 * already started.
 *
 * @example
 * ```ts ignore
 * const handle = run(bot);
 *
 * // Graceful shutdown with a deadline.
 * Deno.addSignalListener("SIGTERM", async () => {
 *   const { lost } = await handle.stop({ timeout: 10_000 });
 *   if (lost.length > 0) console.error("Unfinished at exit:", JSON.stringify(lost));
 *   Deno.exit(0);
 * });
 *
 * // The run ends with an error only when polling cannot go on (a revoked token, say).
 * await handle.task()?.catch((error) => {
 *   console.error(error); // a PollingError, without the token
 *   Deno.exit(1);
 * });
 * ```
 */
export interface RunnerHandle<Y = unknown> {
  /** Starts fetching (no-op while running; after a stop in progress, restarts once it is done). */
  start: () => void;
  /**
   * Stops fetching (aborting the pending long poll), waits for every update
   * already taken to finish, confirms them, and resolves. Calling it again
   * returns the same promise (a `timeout` given then can only bring the
   * deadline forward); calling it when not running resolves at once. It
   * rejects with a `RangeError` for a bad `timeout`.
   *
   * Do not `await` it inside a handler of the same bot: it waits for every
   * update, that one included. Call `void handle.stop()` there instead.
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

const STOP = "Cannot stop runner";

class Runner<Y> {
  readonly #source: UpdateSource<Y>;
  readonly #sink: UpdateSink<Y>;
  #state: "idle" | "running" | "stopping" = "idle";
  #epoch = 0;
  #fetched = 0;
  #pulling: Promise<void> = Promise.resolve();
  #task: PromiseWithResolvers<void> | undefined;
  #stopping: Promise<StopResult<Y>> | undefined;
  /** The deadline of the stop in progress, if it has one. */
  #deadline: Deadline | undefined;
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
    try {
      optionalObject(STOP, "options", options);
      knownOptions(STOP, options, ["timeout"]);
      if (options.timeout !== undefined) numberInRange(STOP, "timeout", options.timeout, 0);
    } catch (error) {
      return Promise.reject(error);
    }
    const { timeout } = options;
    this.#restart = false;
    if (this.#stopping !== undefined) {
      if (timeout !== undefined) this.#deadline?.tighten(timeout);
      return this.#stopping;
    }
    if (this.#state === "idle") {
      return Promise.resolve({ unfinished: [], lost: [], redelivered: [] });
    }
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
      lag: oldest === undefined ? 0 : clock().now() - oldest,
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
    const deadline = this.#deadline = new Deadline();
    if (timeout !== undefined) deadline.tighten(timeout);
    this.#stopping = this.#drain(deadline, fatal === undefined)
      .finally(() => {
        deadline.clear();
        this.#deadline = undefined;
      })
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

  /**
   * Waits for the sink (until the drain part of the deadline), confirms what
   * finished (not after a fatal error) and closes what the sink adopted,
   * each only until the deadline.
   */
  async #drain(deadline: Deadline, confirm: boolean): Promise<StopResult<Y>> {
    const { signal } = deadline.end;
    const drained = this.#pulling.then(() => this.#idle(deadline.drain.signal));
    const inTime = await settlesBefore(drained, deadline.drain.signal);
    const unended = () => this.#sink.unended?.() ?? this.#sink.snapshot();
    const atDeadline = inTime ? [] : unended();
    const confirming = confirm ? this.#source.confirm?.(signal) : undefined;
    if (confirming !== undefined) await settlesBefore(confirming, signal);
    const closing = this.#sink.close?.();
    if (closing !== undefined) await settlesBefore(closing, signal);
    // One that ended since the deadline and was confirmed is neither lost
    // nor coming again: reporting it as lost would have it run twice.
    const still = new Set(atDeadline.length === 0 ? [] : unended());
    const unfinished: Y[] = [];
    const lost: Y[] = [];
    const redelivered: Y[] = [];
    for (const update of atDeadline) {
      if (this.#source.willResend?.(update)) redelivered.push(update);
      else if (still.has(update)) lost.push(update);
      else continue;
      unfinished.push(update);
    }
    return { unfinished, lost, redelivered };
  }

  /** Resolves once the sink has nothing running (or, for a sink without `idle`, `signal` aborts). */
  async #idle(signal: AbortSignal): Promise<void> {
    if (this.#sink.idle !== undefined) return await this.#sink.idle();
    while (this.#sink.size() > 0 && !signal.aborted) await delay(10, signal);
  }
}

/**
 * The deadline of a stop: `drain` aborts when the wait for the sink must
 * end, `end` when the whole stop must. Without a timeout neither aborts.
 */
class Deadline {
  readonly drain = new AbortController();
  readonly end = new AbortController();
  #at = Infinity;
  #timers: (TimerId | undefined)[] = [];

  /** Brings the deadline forward to `timeout` ms from now (never back). */
  tighten(timeout: number): void {
    const at = clock().now() + timeout;
    if (!(at < this.#at)) return;
    this.#at = at;
    this.clear();
    const reserve = Math.min(Math.max(timeout / 10, 100), timeout / 2, 1_000);
    this.#timers = [
      startTimer(() => this.drain.abort(), timeout - reserve),
      startTimer(() => this.end.abort(), timeout),
    ];
  }

  clear(): void {
    for (const timer of this.#timers) stopTimer(timer);
    this.#timers = [];
  }
}
