/**
 * A queue engine on Redis Streams, for bots that run past one machine: one
 * ingress (`forward()` polling Telegram, or `webhookTo()`) stores each update
 * once in one of `partitions` streams, chosen by a hash of its key, and any
 * number of `runFrom()` worker processes lease the partitions, about
 * `partitions / workers` each, and run them with per-key order.
 *
 * ```ts ignore
 * import { Bot } from "grammy";
 * import { runFrom } from "@grammyx/runner/queue";
 * import { connectRedis, redisQueue } from "@grammyx/runner/redis_queue";
 *
 * const bot = new Bot(Deno.env.get("BOT_TOKEN")!);
 * const redis = await connectRedis(Deno.env.get("REDIS_URL")!);
 * runFrom(bot, redisQueue(redis, { prefix: "my-bot:" }));
 * ```
 *
 * @module
 */

import type { Context, Update } from "./_deps.ts";
import { RedisStreams } from "./_redis_engine.ts";
import { chatOrSender } from "./_update_keys.ts";
import { defaultReporter, type Reporter } from "./_report.ts";
import type { RedisClient } from "./_redis_scripts.ts";
import { isFunction, knownOptions, optionalObject, positiveInteger, show } from "./_validate.ts";
import type { Constraint } from "./sequentialize.ts";
import type { QueueEngine } from "./queue.ts";

export { connectRedis, type ConnectRedisOptions } from "./_redis_connect.ts";
export type { RedisClient, RedisCommands, RedisSubscriber } from "./_redis_scripts.ts";
export type { Report, Reporter } from "./_report.ts";
export type { Outcome } from "./sink.ts";
export type { Constraint } from "./sequentialize.ts";
export type { Lease, QueuedUpdate, QueueEngine, QueueOutcome, QueueRecord } from "./queue.ts";

/**
 * A Telegram update, as grammY's `Update` type (`grammy/types`) describes
 * it: what the queue holds unless you give another type.
 *
 * @internal
 */
type TelegramUpdate = Update;

/**
 * grammY's `Context`, which the key function gets (around the update, with
 * no `api` to call).
 *
 * @internal
 */
type UpdateContext = Context;

/**
 * Options of `redisQueue()`.
 *
 * @typeParam C The context the key function gets (grammY's `Context`)
 */
export interface RedisQueueOptions<C extends { update: { update_id: number } } = UpdateContext> {
  /**
   * The start of every key the queue writes (streams, leases, the dedupe
   * set, the wake-up channel). Give each bot that shares a Redis its own.
   *
   * @default {"grammyx:"}
   */
  prefix?: string;
  /**
   * How many streams the updates are spread over. Each worker holds about
   * `partitions / workers` of them, so it bounds how many workers can share
   * the load. Every ingress and worker of one queue must use the same number.
   *
   * @default {16}
   */
  partitions?: number;
  /**
   * The key of an update, as for `sequentialize()`: updates with the same
   * key go to the same partition and run one at a time, in `update_id`
   * order. It gets a grammY `Context` around the update (no `api` calls, no
   * plugin state such as `ctx.session`).
   * An array puts the update in the partition of its first key. No key:
   * the update is its own key.
   *
   * @default {(ctx) => ctx.chat?.id ?? ctx.from?.id ?? ctx.pollAnswer?.user?.id}
   */
  key?: (ctx: C) => Constraint;
  /**
   * How many of the latest update ids the queue remembers to drop a repeated
   * store (a poller restarted before confirming, a webhook retry).
   *
   * @default {100_000}
   */
  dedupeWindow?: number;
  /**
   * Receives failures of the wake-up connection and entries that hold no
   * update (moved to the dead letters); one line on stderr by default.
   */
  reporter?: Reporter;
}

/** The engine; `close()` ends its wake-up connection (the client stays yours). */
export type RedisQueue<Y extends { update_id: number } = TelegramUpdate> = QueueEngine<Y> & {
  /** The number of partitions, as configured. */
  readonly partitions: number;
  /** The highest update id ever stored, if any: `forward()` skips what is below after a restart. */
  lastStored(): Promise<number | undefined>;
  /** Ends the wake-up connection, if one is open. */
  close(): Promise<void>;
};

const SUBJECT = "Cannot create Redis queue";

/**
 * Creates a queue engine on Redis Streams over a connected node-redis (v5)
 * client. Stores are idempotent by `update_id` and acknowledged by Redis;
 * leases expire in Redis's clock; every write made under a lease checks it
 * in the same script. Use a Redis with AOF (`appendonly yes`) so that a
 * restart keeps what was acknowledged.
 *
 * @typeParam Y The update type (grammY's `Update`)
 * @param client A connected client from node-redis `createClient()` or `connectRedis()`
 * @param options The prefix, the partitions, the key function
 * @returns The engine, for `forward()`, `webhookTo()` and `runFrom()`
 * @throws {TypeError | RangeError} if an argument is invalid
 *
 * @example
 * ```ts ignore
 * // Needs a Redis server (the tests start their own: tests/_redis.ts).
 * import assert from "node:assert/strict";
 * import { connectRedis, redisQueue } from "@grammyx/runner/redis_queue";
 *
 * const redis = await connectRedis("redis://127.0.0.1:6379");
 * const queue = redisQueue(redis, { prefix: "my-bot:", partitions: 8 });
 * const update = { update_id: 1, message: { chat: { id: 7 } } };
 * await queue.store([update as never]);
 * await queue.store([update as never]); // a repeated store stores nothing
 * assert.equal(await queue.lastStored(), 1);
 * assert.equal((await queue.lanes(8)).length, 1);
 * await queue.close();
 * redis.destroy();
 * ```
 */
export function redisQueue<
  Y extends { update_id: number } = TelegramUpdate,
  C extends { update: { update_id: number } } = UpdateContext,
>(
  client: RedisClient,
  options: RedisQueueOptions<C> = {},
): RedisQueue<Y> {
  if (
    typeof client !== "object" || client === null || typeof client.sendCommand !== "function" ||
    typeof client.duplicate !== "function"
  ) {
    throw new TypeError(
      `${SUBJECT} as 'client' must be a node-redis client (createClient() or connectRedis()): current value is ${
        show(client)
      }`,
    );
  }
  optionalObject(SUBJECT, "options", options);
  knownOptions(SUBJECT, options, ["prefix", "partitions", "key", "dedupeWindow", "reporter"]);
  const {
    prefix = "grammyx:",
    partitions = 16,
    key = chatOrSender as unknown as (ctx: C) => Constraint,
    dedupeWindow = 100_000,
    reporter = defaultReporter,
  } = options;
  if (typeof prefix !== "string") {
    throw new TypeError(
      `${SUBJECT} as 'prefix' must be a string: current value is ${show(prefix)}`,
    );
  }
  positiveInteger(SUBJECT, "partitions", partitions);
  if (partitions > 1024) {
    throw new RangeError(
      `${SUBJECT} as 'partitions' must be at most 1024: current value is ${partitions}`,
    );
  }
  isFunction(SUBJECT, "key", key);
  positiveInteger(SUBJECT, "dedupeWindow", dedupeWindow);
  isFunction(SUBJECT, "reporter", reporter);
  return new RedisStreams<Y, C>(client, { prefix, partitions, key, dedupeWindow, reporter });
}
