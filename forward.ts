/**
 * The polling ingress of a queue: `forward(bot, queue)` long-polls Telegram
 * with the same fetcher as `run()` (backoff, 401/409/429 policy, lossless
 * `stop()`) and stores every batch in a queue engine, confirming it to
 * Telegram only once the store was acknowledged. It never runs bot code:
 * `runFrom()` workers do, on any number of machines.
 *
 * ```ts ignore
 * import { Bot } from "grammy";
 * import { forward } from "@grammyx/runner/forward";
 * import { connectRedis, redisQueue } from "@grammyx/runner/redis_queue";
 *
 * const bot = new Bot(Deno.env.get("BOT_TOKEN")!);
 * const redis = await connectRedis(Deno.env.get("REDIS_URL")!);
 * const poller = forward(bot, redisQueue(redis));
 * Deno.addSignalListener("SIGTERM", () => void poller.stop());
 * ```
 *
 * @module
 */

import type { Update } from "./_deps.ts";
import { stopOnAbort } from "./_compose.ts";
import { defaultReporter } from "./_report.ts";
import { knownOptions, optionalObject, show } from "./_validate.ts";
import { type BotAdapter, createUpdateSupplier, type RunnerOptions } from "./fetcher.ts";
import type { UpdateJournal } from "./journal.ts";
import type { QueueEngine } from "./queue.ts";
import { createRunner, type RunnerHandle } from "./runner.ts";
import { createConcurrentSink } from "./sink.ts";
import { createSource, type SourceOptions } from "./source.ts";

export type { BotAdapter, ConfirmMode, FetchOptions, RunnerOptions } from "./fetcher.ts";
export type { JournalState, UpdateJournal } from "./journal.ts";
export type { Outcome, SinkStats } from "./sink.ts";
export type { QueueEngine, QueueOutcome } from "./queue.ts";
export type { RunnerHandle, RunnerStats, StopOptions, StopResult } from "./runner.ts";
export type { Report, Reporter } from "./_report.ts";
export type { SourceOptions } from "./source.ts";

/**
 * A Telegram update, as grammY's `Update` type (`grammy/types`) describes
 * it: what the poller forwards unless you give another type.
 *
 * @internal
 */
type TelegramUpdate = Update;

/** Options of `forward()`. */
export interface ForwardOptions<Y = TelegramUpdate> {
  /** How eagerly to poll (speed/traffic balance). */
  source?: SourceOptions;
  /**
   * How to fetch, retry and report, as for `run()`; the queue takes the
   * place of `journal`, and `confirm` is implied (a batch is confirmed once
   * it is stored).
   */
  runner?: Omit<RunnerOptions<Y>, "journal" | "confirm">;
  /** Stops the poller (like `handle.stop()`) when it aborts. */
  signal?: AbortSignal;
}

/** An engine that can tell the highest update id it ever stored (Redis). */
interface RemembersLast {
  lastStored(): Promise<number | undefined>;
}

const SUBJECT = "Cannot forward updates";

/**
 * Long-polls Telegram and stores each batch in `queue` before confirming
 * it: killing the poller loses nothing (Telegram sends what was not
 * confirmed again), and a restart stores nothing twice (the queue drops
 * repeated `update_id`s; an engine that remembers its highest id lets the
 * poller skip them without a write). While the queue cannot store (Redis
 * restarting), the store is retried with capped backoff, each failure
 * reported in one line, and nothing more is confirmed. `stop()` ends the
 * long poll, waits for the batch being stored, and confirms it.
 *
 * @param bot A grammY bot (anything that fits `BotAdapter`)
 * @param queue The queue engine to store into (e.g. `redisQueue()`)
 * @param options Polling, retries, the reporter, an abort signal
 * @returns A handle to stop the poller and read its stats (`handled`: stored)
 * @throws {TypeError | RangeError} if an argument or option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Bot } from "grammy";
 * import { forward } from "@grammyx/runner/forward";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 *
 * // Any engine works; this one keeps the batches in memory.
 * const stored: number[] = [];
 * const queue = { store: async (updates: { update_id: number }[]) => void stored.push(...updates.map((u) => u.update_id)) };
 *
 * await using api = await FakeBotApi.start();
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * api.pushMessages(5);
 * const poller = forward(bot, queue as never, { runner: { fetch: { timeout: 1 } } });
 * await api.whenConfirmed(6);
 * await poller.stop();
 * assert.deepEqual(stored, [1, 2, 3, 4, 5]);
 * ```
 */
export function forward<Y extends { update_id: number } = TelegramUpdate, R = unknown>(
  bot: BotAdapter<Y, R>,
  queue: Pick<QueueEngine<Y>, "store">,
  options: ForwardOptions<Y> = {},
): RunnerHandle<Y> {
  if (typeof bot !== "object" || bot === null || typeof bot.api?.getUpdates !== "function") {
    throw new TypeError(
      `${SUBJECT} as 'bot' must have api.getUpdates: current value is ${show(bot)}`,
    );
  }
  if (typeof queue !== "object" || queue === null || typeof queue.store !== "function") {
    throw new TypeError(
      `${SUBJECT} as 'queue' must be a queue engine with store() (e.g. redisQueue()): current value is ${
        show(queue)
      }`,
    );
  }
  optionalObject(SUBJECT, "options", options);
  knownOptions(SUBJECT, options, ["source", "runner", "signal"]);
  const { source: sourceOptions = {}, runner: runnerOptions = {}, signal } = options;
  optionalObject(SUBJECT, "runner", runnerOptions);
  knownOptions(SUBJECT, runnerOptions, [
    "fetch",
    "maxRetryTime",
    "retryInterval",
    "maxConflictTime",
    "stallGrace",
    "silent",
    "reporter",
  ], "runner");
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `${SUBJECT} as 'signal' must be an AbortSignal: current value is ${show(signal)}`,
    );
  }
  const supplier = createUpdateSupplier(bot, { ...runnerOptions, journal: journalOf(queue) });
  const source = createSource(supplier, sourceOptions);
  // Stored is done: the "sink" only tells the fetcher, so that the pace and
  // the final confirmation work as in run().
  const sink = createConcurrentSink<Y, unknown>({ consume: async () => {} }, async () => {}, {
    reporter: runnerOptions.reporter ?? defaultReporter,
    onSettled: (update) => supplier.done(update.update_id),
  });
  const handle = createRunner(source, sink);
  if (signal?.aborted) return handle;
  handle.start();
  if (signal !== undefined) stopOnAbort(handle, signal);
  return handle;
}

/** The queue as the fetcher's journal: stores batches; nothing is left unfinished. */
function journalOf<Y extends { update_id: number }>(
  queue: Pick<QueueEngine<Y>, "store"> & Partial<RemembersLast>,
): UpdateJournal<Y> {
  return {
    open: async () => ({
      unfinished: [],
      lastId: typeof queue.lastStored === "function" ? await queue.lastStored() : undefined,
    }),
    store: (updates) => queue.store(updates),
    finish: async () => {},
    compact: async () => {},
  };
}
