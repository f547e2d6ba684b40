/**
 * The update sink: runs each update through a consumer (usually
 * `bot.handleUpdate`) with at most `concurrency` running at once, times them
 * out, routes their errors, and tells the runner how many more updates it can
 * take (backpressure). An update that waits for its key in `sequentialize()`
 * gives its slot back meanwhile, so one busy chat cannot starve the others.
 *
 * ```ts
 * import { createConcurrentSink } from "@grammyx/runner/sink";
 *
 * const sink = createConcurrentSink(
 *   { consume: async (update: { update_id: number }) => {} },
 *   async (error) => console.error(error),
 *   { concurrency: 100 },
 * );
 * await sink.handle([{ update_id: 1 }]);
 * ```
 *
 * @module
 */

import { BATCH } from "./_backlog.ts";
import { defaultReporter, type Report, type Reporter } from "./_report.ts";
import type {
  Outcome,
  SinkErrorHandler,
  SinkStats,
  UpdateConsumer,
  UpdateSink,
} from "./_sink_contract.ts";
import { SinkCore, type SinkSettings } from "./_sink_core.ts";
import { telemetryOf, type TelemetryOptions } from "./_telemetry.ts";
import {
  isFunction,
  knownOptions,
  numberInRange,
  optionalObject,
  positiveInteger,
} from "./_validate.ts";

export type {
  Outcome,
  Report,
  Reporter,
  SinkErrorHandler,
  SinkStats,
  TelemetryOptions,
  UpdateConsumer,
  UpdateSink,
};

/** Options of the sinks. */
export interface SinkOptions<Y> {
  /**
   * How many updates may run at once. Updates waiting for their key in
   * `sequentialize()` do not count.
   *
   * @default {500}
   */
  concurrency?: number;
  /**
   * How many updates the sink may hold that were taken and not finished
   * (running, waiting for a slot or for their key). When it is reached,
   * fetching waits. Must be at least `concurrency`.
   *
   * @default {Math.max(10_000, concurrency)}
   */
  maxPending?: number;
  /**
   * Bounds how long an update may hold a slot. The clock starts when it
   * takes a slot, and starts again when it takes one back after waiting for
   * its key. A timed-out update frees its slot and its keys stay held until
   * its task really ends.
   *
   * @default {undefined} (no timeout)
   */
  timeout?: {
    /** The time limit in milliseconds. */
    milliseconds: number;
    /** Called with the update and its still-running task. Must not throw. */
    handler: (update: Y, task: Promise<void>) => void;
  };
  /** Called once per update when it is handled, failed or timed out. */
  onSettled?: (update: Y, outcome: Outcome) => void;
  /**
   * Receives what could not be handed to the bot: an error handler that
   * threw, a failure after a timeout.
   *
   * @default {defaultReporter} (one line on stderr)
   */
  reporter?: Reporter;
  /**
   * Where the sink's OpenTelemetry metrics and update spans go (see
   * `TelemetryOptions`). Without it, the providers registered with
   * `@opentelemetry/api` when the sink is created; with none, nothing is
   * recorded.
   *
   * @default {{}}
   */
  telemetry?: TelemetryOptions;
}

/**
 * Creates the sink `run()` uses: updates run concurrently, at most
 * `concurrency` at once, and `handle` resolves as soon as a slot is free.
 *
 * @param consumer Processes an update, e.g. `{ consume: (u) => bot.handleUpdate(u) }`
 * @param errorHandler Gets the error (and the update) when `consume` rejects
 * @param options Concurrency, buffer bound, timeout, callbacks
 * @returns An update sink
 * @throws {TypeError | RangeError} if an option is invalid or unknown
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createConcurrentSink } from "@grammyx/runner";
 *
 * let running = 0, peak = 0;
 * const sink = createConcurrentSink(
 *   {
 *     consume: async () => {
 *       peak = Math.max(peak, ++running);
 *       await new Promise((ok) => setTimeout(ok, 1));
 *       running--;
 *     },
 *   },
 *   async () => {},
 *   { concurrency: 2 },
 * );
 * await sink.handle([{ update_id: 1 }, { update_id: 2 }, { update_id: 3 }]);
 * await sink.idle?.();
 * assert.equal(peak, 2);
 * ```
 */
export function createConcurrentSink<Y, R = unknown>(
  consumer: UpdateConsumer<Y>,
  errorHandler: SinkErrorHandler<R, Y>,
  options: SinkOptions<Y> = {},
): UpdateSink<Y> {
  const core = new SinkCore(settingsOf(consumer, errorHandler, options, "concurrent"));
  return sinkOf(core, (updates) => {
    core.add(updates);
    return core.backlog.capacity();
  });
}

/**
 * Creates a sink that handles one update after another, like grammY's
 * `bot.start()`: predictable, good for debugging, slow for a busy bot.
 *
 * @param consumer Processes an update
 * @param errorHandler Gets the error (and the update) when `consume` rejects
 * @param options Timeout and callbacks (`concurrency` is always 1)
 * @returns An update sink whose `handle` resolves when the batch is done
 * @throws {TypeError | RangeError} if an option is invalid or unknown
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSequentialSink } from "@grammyx/runner";
 *
 * const seen: number[] = [];
 * const sink = createSequentialSink(
 *   { consume: async (u: { update_id: number }) => void seen.push(u.update_id) },
 *   async () => {},
 * );
 * await sink.handle([{ update_id: 1 }, { update_id: 2 }]);
 * assert.deepEqual(seen, [1, 2]);
 * ```
 */
export function createSequentialSink<Y, R = unknown>(
  consumer: UpdateConsumer<Y>,
  errorHandler: SinkErrorHandler<R, Y>,
  options: SinkOptions<Y> = {},
): UpdateSink<Y> {
  return batchWise(new SinkCore(settingsOf(consumer, errorHandler, options, "sequential")));
}

/**
 * Creates a sink that runs all updates of a batch at once and takes the next
 * batch only when the whole batch is done (telegraf's old behaviour).
 *
 * @param consumer Processes an update
 * @param errorHandler Gets the error (and the update) when `consume` rejects
 * @param options Timeout and callbacks (`concurrency` is the batch size)
 * @returns An update sink whose `handle` resolves when the batch is done
 * @throws {TypeError | RangeError} if an option is invalid or unknown
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createBatchSink } from "@grammyx/runner";
 *
 * let running = 0, peak = 0;
 * const sink = createBatchSink(
 *   { consume: async () => { peak = Math.max(peak, ++running); await Promise.resolve(); running--; } },
 *   async () => {},
 * );
 * await sink.handle([{ update_id: 1 }, { update_id: 2 }, { update_id: 3 }]);
 * assert.equal(peak, 3);
 * assert.equal(sink.size(), 0);
 * ```
 */
export function createBatchSink<Y, R = unknown>(
  consumer: UpdateConsumer<Y>,
  errorHandler: SinkErrorHandler<R, Y>,
  options: SinkOptions<Y> = {},
): UpdateSink<Y> {
  return batchWise(new SinkCore(settingsOf(consumer, errorHandler, options, "batch")));
}

/** A sink whose `handle` resolves once the whole batch is done. */
function batchWise<Y>(core: SinkCore<Y>): UpdateSink<Y> {
  return sinkOf(core, async (updates) => {
    core.add(updates);
    await core.backlog.finished();
    return Infinity;
  });
}

function sinkOf<Y>(core: SinkCore<Y>, handle: UpdateSink<Y>["handle"]): UpdateSink<Y> {
  return {
    handle,
    size: () => core.backlog.size(),
    snapshot: () => core.backlog.snapshot(),
    unended: () => core.backlog.unended(),
    idle: () => core.backlog.idle(),
    stats: () => core.backlog.stats(),
    close: () => core.close(),
  };
}

const SUBJECT = "Cannot create sink";

/** Checks the arguments of a sink and applies the defaults of its options, all in one place. */
function settingsOf<Y>(
  consumer: UpdateConsumer<Y>,
  errorHandler: SinkErrorHandler<never, Y>,
  options: SinkOptions<Y>,
  kind: "concurrent" | "sequential" | "batch",
): SinkSettings<Y> {
  if (typeof consumer !== "object" || consumer === null) {
    throw new TypeError(`${SUBJECT} as 'consumer' must be an object with a consume function`);
  }
  isFunction(SUBJECT, "consumer.consume", consumer.consume);
  isFunction(SUBJECT, "errorHandler", errorHandler);
  optionalObject(SUBJECT, "options", options);
  knownOptions(SUBJECT, options, [
    "concurrency",
    "maxPending",
    "timeout",
    "onSettled",
    "reporter",
    "telemetry",
  ]);
  const {
    concurrency = 500,
    maxPending = Math.max(10_000, concurrency),
    timeout,
    onSettled,
    reporter = defaultReporter,
    telemetry,
  } = options;
  const concurrent = kind === "concurrent";
  if (concurrent) {
    positiveInteger(SUBJECT, "concurrency", concurrency);
    positiveInteger(SUBJECT, "maxPending", maxPending);
    if (maxPending < concurrency) {
      throw new RangeError(
        `${SUBJECT} as 'maxPending' must be at least 'concurrency' (${concurrency}): current value is ${maxPending}`,
      );
    }
  }
  if (timeout !== undefined) {
    optionalObject(SUBJECT, "timeout", timeout);
    knownOptions(SUBJECT, timeout, ["milliseconds", "handler"], "timeout");
    numberInRange(SUBJECT, "timeout.milliseconds", timeout.milliseconds, 1);
    isFunction(SUBJECT, "timeout.handler", timeout.handler);
  }
  if (onSettled !== undefined) isFunction(SUBJECT, "onSettled", onSettled);
  isFunction(SUBJECT, "reporter", reporter);
  return {
    telemetry: telemetryOf(SUBJECT, telemetry),
    consumer,
    errorHandler: errorHandler as SinkErrorHandler<unknown, Y>,
    concurrency: concurrent ? concurrency : kind === "sequential" ? 1 : Infinity,
    maxPending: concurrent ? maxPending : Infinity,
    ahead: concurrent ? Math.min(2 * BATCH, concurrency) : 0,
    timeout,
    onSettled,
    reporter,
  };
}
