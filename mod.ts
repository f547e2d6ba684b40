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

import { botErrorHandler, checkSignal, doneWhenEnded, stopOnAbort } from "./_compose.ts";
import { defaultReporter, type Report, type Reporter } from "./_report.ts";
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
export type {
  TelemetryAttributes,
  TelemetryMeterProvider,
  TelemetryTracerProvider,
} from "./telemetry.ts";

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

// Webhooks and queues (Deno Deploy, several processes)
export { runFromKv, webhookToKv } from "./kv_queue.ts";
export type { KvQueueOptions, RunFromKvOptions, WebhookToKvOptions } from "./kv_queue.ts";
export { kvQueue } from "./kv_queue.ts";
export type { DeadLetter, KvQueue } from "./kv_queue.ts";
export { runFrom, UpdateTooLargeError, webhookTo } from "./queue.ts";
export type {
  Lease,
  QueueBot,
  QueuedUpdate,
  QueueEngine,
  QueueOutcome,
  QueueRecord,
  RunFromOptions,
  WebhookOptions,
} from "./queue.ts";

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

/**
 * Options of `run(bot, options)`, grouped by the part they configure. Every
 * option is checked before the first request: a misspelt name or a value out
 * of range throws a `TypeError` or `RangeError` that names it.
 *
 * @example
 * ```ts ignore
 * const controller = new AbortController();
 * run(bot, {
 *   sink: { concurrency: 100, timeout: { milliseconds: 30_000, handler: (u) => console.warn("slow", u.update_id) } },
 *   runner: { fetch: { allowed_updates: ["message", "callback_query"] }, maxRetryTime: 60 * 60_000 },
 *   source: { speedTrafficBalance: 0.5 },
 *   signal: controller.signal, // controller.abort() stops the bot like handle.stop()
 * });
 * ```
 *
 * @typeParam Y The update type (grammY's `Update`)
 */
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
  checkSignal(subject, signal);
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
    botErrorHandler(bot, reporter),
    {
      reporter,
      ...sinkOptions,
      ...(telemetry === undefined ? {} : { telemetry }),
      ...(typeof timeout?.handler === "function"
        ? {
          timeout: {
            ...timeout,
            handler: doneWhenEnded(timeout.handler, (update) => supplier.done(update.update_id)),
          },
        }
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
