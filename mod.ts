/**
 * Runs a grammY bot under long polling at scale: updates are fetched
 * concurrently and run through the middleware many at once, under a bound you
 * set, with `sequentialize()` keeping each chat in order. A drop-in
 * replacement for `@grammyjs/runner`: change the import, nothing else.
 *
 * ```ts ignore
 * import { Bot } from "grammy";
 * import { run, sequentialize } from "@grammyx/runner";
 *
 * const bot = new Bot(Deno.env.get("BOT_TOKEN")!);
 * bot.use(sequentialize((ctx) => ctx.chat?.id.toString()));
 * bot.on("message", (ctx) => ctx.reply("Hi!"));
 * run(bot);
 * ```
 *
 * @module
 */

import { defaultReporter, type Report, type Reporter, safeReport } from "./_report.ts";
import { describe, redactError } from "./_redact.ts";
import { knownOptions, optionalObject } from "./_validate.ts";
import { type BotAdapter, createUpdateSupplier, type RunnerOptions } from "./fetcher.ts";
import { createRunner, type RunnerHandle } from "./runner.ts";
import { createConcurrentSink, type SinkOptions, type TelemetryOptions } from "./sink.ts";
import { createSource, type SourceOptions } from "./source.ts";

// What most bots need
export { sequentialize } from "./sequentialize.ts";
export type { Constraint } from "./sequentialize.ts";
export type { RunnerHandle, RunnerStats, StopOptions, StopResult } from "./runner.ts";
export { PollingError } from "./errors.ts";
export type { PollingFailure } from "./errors.ts";
export type { BotAdapter, ConfirmMode, FetchOptions, RunnerOptions } from "./fetcher.ts";
export type { JournalState, UpdateJournal } from "./journal.ts";
export type { Report, Reporter, TelemetryOptions };

// Building blocks
export { createRunner } from "./runner.ts";
export { createSource } from "./source.ts";
export type { SourceOptions, SupplierStats, UpdateSource, UpdateSupplier } from "./source.ts";
export { createUpdateFetcher, createUpdateSupplier } from "./fetcher.ts";
export type { BotUpdateSupplier } from "./fetcher.ts";
export { createBatchSink, createConcurrentSink, createSequentialSink } from "./sink.ts";
export type {
  Outcome,
  SinkErrorHandler,
  SinkOptions,
  SinkStats,
  UpdateConsumer,
  UpdateSink,
} from "./sink.ts";

// Worker threads
export { distribute } from "./distribute.ts";
export type {
  DistributableContext,
  DistributedMiddleware,
  DistributeKey,
  DistributeOptions,
  WorkerFailure,
} from "./distribute.ts";
export { BotWorker } from "./worker.ts";

/** Options of `run(bot, options)`, grouped by the part they configure. */
export interface RunOptions<Y> {
  /** How eagerly to poll (speed/traffic balance). */
  source?: SourceOptions;
  /** How to fetch, retry and confirm updates, and where failures are reported. */
  runner?: RunnerOptions<Y>;
  /** Concurrency, the bound on buffered updates, and timeouts. */
  sink?: SinkOptions<Y>;
  /** Stops the runner (like `handle.stop()`) when it aborts. */
  signal?: AbortSignal;
  /**
   * Where OpenTelemetry metrics and spans go, for the fetcher and the sink
   * alike (the same as `runner.telemetry` and `sink.telemetry`). Without
   * it, the providers registered with `@opentelemetry/api` when `run()` is
   * called; with none, nothing is recorded.
   *
   * @default {{}}
   */
  telemetry?: TelemetryOptions;
}

/**
 * Runs a grammY bot with long polling, handling up to `sink.concurrency`
 * (500) updates at once. Calls `bot.init()` before the first fetch, passes
 * middleware errors to `bot.errorHandler` (set with `bot.catch`), reports an
 * error handler that throws, and keeps running. Fetching slows down when the
 * bot is busy. Options are checked before any request is sent.
 *
 * @param bot A grammY bot (anything that fits `BotAdapter`)
 * @param options Options for the source, the runner and the sink
 * @returns A handle to stop the bot, wait for it, and read its stats
 * @throws {TypeError | RangeError} if an option is invalid
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
 * let handled = 0;
 * bot.on("message", () => void handled++);
 * api.pushMessages(20, { chats: 4 });
 *
 * const handle = run(bot, { runner: { fetch: { timeout: 1 } } });
 * await api.whenConfirmed(1);
 * while (handled < 20) await new Promise((ok) => setTimeout(ok, 5));
 * await handle.stop();
 * assert.equal(handled, 20);
 * assert.equal(api.pending(), 0); // stop() confirmed everything handled
 * ```
 */
export function run<Y extends { update_id: number }, R>(
  bot: BotAdapter<Y, R>,
  options: RunOptions<Y> = {},
): RunnerHandle<Y> {
  const subject = "Cannot run bot";
  if (typeof bot !== "object" || bot === null || typeof bot.handleUpdate !== "function") {
    throw new TypeError(
      `${subject} as 'bot' must have handleUpdate, errorHandler and api.getUpdates`,
    );
  }
  optionalObject(subject, "options", options);
  knownOptions(subject, options, ["source", "runner", "sink", "signal", "telemetry"]);
  const {
    source: sourceOptions = {},
    runner: runnerOptions = {},
    sink: sinkOptions = {},
    signal,
    telemetry,
  } = options;
  optionalObject(subject, "source", sourceOptions);
  optionalObject(subject, "runner", runnerOptions);
  optionalObject(subject, "sink", sinkOptions);
  optionalObject(subject, "telemetry", telemetry);
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `${subject} as 'signal' must be an AbortSignal: current value is ${String(signal)}`,
    );
  }
  const running = runners.get(bot);
  if (running?.isRunning()) {
    throw new Error(
      `${subject} as it is already running in this process: two pollers would handle every update twice (await the first handle's stop() before you run it again)`,
    );
  }
  const reporter = runnerOptions.reporter ?? defaultReporter;

  const supplier = createUpdateSupplier(
    bot,
    telemetry === undefined ? runnerOptions : { ...runnerOptions, telemetry },
  );
  const source = createSource(supplier, sourceOptions);
  const { onSettled, timeout } = sinkOptions;
  const sink = createConcurrentSink<Y, R>(
    { consume: (update) => bot.handleUpdate(update) },
    async (error) => {
      try {
        await bot.errorHandler(error);
      } catch (thrown) {
        const report: Report = {
          source: "errorHandler",
          message: `The bot's error handler threw (set one with bot.catch): ${
            describe(thrown, bot.token)
          }`,
          error: redactError(thrown, bot.token),
        };
        safeReport(reporter, report);
      }
    },
    {
      reporter,
      ...sinkOptions,
      ...(telemetry === undefined ? {} : { telemetry }),
      ...(typeof timeout?.handler === "function"
        ? { timeout: { ...timeout, handler: doneWhenEnded(timeout.handler, supplier) } }
        : {}),
      onSettled: (update, outcome) => {
        // A timed-out update is done only when its task ends (see doneWhenEnded).
        if (outcome !== "timedOut") supplier.done(update.update_id);
        onSettled?.(update, outcome);
      },
    },
  );
  const handle = createRunner(source, sink);
  runners.set(bot, handle);

  if (signal?.aborted) return handle;
  handle.start();
  if (signal !== undefined) stopOnAbort(handle, signal);
  return handle;
}

/** The runner of each bot that `run()` started, to refuse a second one. */
const runners = new WeakMap<object, Pick<RunnerHandle, "isRunning">>();

/**
 * Wraps a timeout handler so that the update counts as done (for the
 * confirmed offset and the journal) only when its task really ends: a
 * crash before then must not lose it.
 */
function doneWhenEnded<Y extends { update_id: number }>(
  handler: (update: Y, task: Promise<void>) => void,
  supplier: { done: (updateId: number) => void },
): (update: Y, task: Promise<void>) => void {
  return (update, task) => {
    const done = () => supplier.done(update.update_id);
    task.then(done, done);
    handler(update, task);
  };
}

/** Stops `handle` when `signal` aborts; forgets the signal once the run ends. */
function stopOnAbort(handle: Pick<RunnerHandle, "stop" | "task">, signal: AbortSignal): void {
  const onAbort = () => void handle.stop();
  signal.addEventListener("abort", onAbort, { once: true });
  const forget = () => signal.removeEventListener("abort", onAbort);
  handle.task()?.then(forget, forget);
}
