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

import { Context, type Update } from "./_deps.ts";
import { keysOf } from "./_keys.ts";
import { redactSecrets } from "./_redact.ts";
import { defaultReporter, type Reporter, safeReport } from "./_report.ts";
import { type RedisClient, RedisScripts, type RedisSubscriber } from "./_redis_scripts.ts";
import { isFunction, knownOptions, optionalObject, positiveInteger, show } from "./_validate.ts";
import type { Constraint } from "./sequentialize.ts";
import type { Lease, QueuedUpdate, QueueEngine, QueueRecord } from "./queue.ts";

export { connectRedis, type ConnectRedisOptions } from "./_redis_connect.ts";
export type { RedisClient, RedisCommands, RedisSubscriber } from "./_redis_scripts.ts";
export type { Report, Reporter } from "./_report.ts";
export type { Outcome } from "./sink.ts";
export type { Constraint } from "./sequentialize.ts";
export type { Lease, QueuedUpdate, QueueEngine, QueueOutcome, QueueRecord } from "./queue.ts";

/**
 * A Telegram update, as grammY's `Update` type (`grammy/types`) describes
 * it: what the queue holds unless you give another type. (Tagged so that
 * `deno doc --lint` accepts a type of another package in a public signature.)
 *
 * @internal
 */
type TelegramUpdate = Update;

/**
 * grammY's `Context`, which the key function gets (around the update, with
 * no `api` to call). (Tagged like `TelegramUpdate`.)
 *
 * @internal
 */
type UpdateContext = Context;

/**
 * Options of `redisQueue()`.
 *
 * @typeParam C The context the key function gets (grammY's `Context`)
 */
export interface RedisQueueOptions<C = UpdateContext> {
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
   * order. It gets a grammY `Context` around the update (no `api` calls).
   * An array puts the update in the partition of its first key. No key:
   * the update is its own key.
   *
   * @default {(ctx) => ctx.chat?.id ?? ctx.from?.id}
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

/** The update in `data`, or `undefined` unless it is JSON of an object with an integer `update_id`. */
function parse(data: string): { update_id: number } | undefined {
  try {
    const value = JSON.parse(data);
    return Number.isSafeInteger(value?.update_id) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The default key: the chat id, else the sender id. */
function defaultKey(ctx: Context): Constraint {
  return ctx.chat?.id ?? ctx.from?.id;
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
export function redisQueue<Y extends { update_id: number } = TelegramUpdate, C = UpdateContext>(
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
    key = defaultKey as unknown as (ctx: C) => Constraint,
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

interface Settings<C> {
  prefix: string;
  partitions: number;
  key: (ctx: C) => Constraint;
  dedupeWindow: number;
  reporter: Reporter;
}

/** Where an update read from Redis came from, to record it there. */
interface Origin {
  partition: number;
  id: string;
}

class RedisStreams<Y extends { update_id: number }, C> implements QueueEngine<Y> {
  readonly #client: RedisClient;
  readonly #settings: Settings<C>;
  readonly #scripts: RedisScripts;
  readonly #origins = new WeakMap<QueuedUpdate<Y>, Origin>();
  readonly #listeners = new Set<(lane: string) => Promise<void> | undefined>();
  #subscriber: RedisSubscriber | undefined;
  #subscribing: Promise<unknown> | undefined;

  constructor(client: RedisClient, settings: Settings<C>) {
    this.#client = client;
    this.#settings = settings;
    this.#scripts = new RedisScripts(client, settings.prefix, settings.partitions);
  }

  get partitions(): number {
    return this.#settings.partitions;
  }

  async store(updates: Y[]): Promise<void> {
    if (!Array.isArray(updates)) {
      throw new TypeError(
        `Cannot store updates in Redis queue as 'updates' must be an array: current value is ${
          show(updates)
        }`,
      );
    }
    if (updates.length === 0) return;
    const parts: string[] = [];
    for (const update of updates) {
      if (!Number.isSafeInteger(update?.update_id) || update.update_id < 0) {
        throw new TypeError(
          `Cannot store updates in Redis queue as every update must have an integer 'update_id' of at least 0: current value is ${
            show(update?.update_id)
          }`,
        );
      }
      const key = this.#keyOf(update);
      parts.push(
        String(this.#partitionOf(key)),
        String(update.update_id),
        key,
        JSON.stringify(update),
      );
    }
    await this.#scripts.store(this.#settings.dedupeWindow, parts);
  }

  /** The highest update id ever stored, if any (a restarted poller skips what is below). */
  async lastStored(): Promise<number | undefined> {
    return await this.#scripts.last();
  }

  async lanes(limit: number): Promise<string[]> {
    return (await this.#scripts.lanes(limit)).map(String);
  }

  listen(wake: (lane: string) => Promise<void> | undefined): () => void {
    this.#listeners.add(wake);
    this.#subscribe();
    return () => {
      this.#listeners.delete(wake);
      if (this.#listeners.size === 0) void this.close();
    };
  }

  async lease(lane: string, owner: string, milliseconds: number): Promise<Lease | undefined> {
    const partition = this.#partition(lane);
    const expiresAt = Date.now() + milliseconds;
    if (!await this.#scripts.lease(partition, owner, milliseconds)) return undefined;
    return { lane, owner, expiresAt };
  }

  async read(lease: Lease, limit: number): Promise<QueuedUpdate<Y>[]> {
    const partition = this.#partition(lease.lane);
    const entries = await this.#scripts.read(partition, lease.owner, limit);
    // Lost: the next record or release says so. Surplus: this worker holds
    // more than its share; reading nothing makes it release the partition.
    if (entries === "lost" || entries === "surplus") return [];
    const items: QueuedUpdate<Y>[] = [];
    const corrupt: { id: string; dead: boolean }[] = [];
    for (const entry of entries) {
      const update = parse(entry.data);
      if (update === undefined) {
        corrupt.push({ id: entry.id, dead: true });
        continue;
      }
      const item = { update: update as Y, key: entry.key, attempts: entry.attempts };
      this.#origins.set(item, { partition, id: entry.id });
      items.push(item);
    }
    if (corrupt.length > 0) {
      // Not an update of this queue: moved aside, so that it cannot stop the partition.
      const remaining = Math.max(1, lease.expiresAt - Date.now());
      await this.#scripts.record(lease.owner, remaining, new Map([[partition, corrupt]]));
      safeReport(this.#settings.reporter, {
        source: "queue",
        message:
          `Moved ${corrupt.length} entries of partition ${partition} that hold no update to ${this.#settings.prefix}dead: ${
            corrupt.map((entry) => entry.id).join(", ")
          }`,
      });
    }
    return items;
  }

  async record(records: QueueRecord<Y>[], renew: Lease[], milliseconds: number): Promise<Lease[]> {
    const byPartition = new Map<number, { id: string; dead: boolean }[]>();
    const leases = new Map<number, Lease[]>();
    const note = (lease: Lease) => {
      const partition = this.#partition(lease.lane);
      if (!byPartition.has(partition)) byPartition.set(partition, []);
      leases.set(partition, [...leases.get(partition) ?? [], lease]);
      return partition;
    };
    for (const { lease, item, outcome } of records) {
      const partition = note(lease);
      const origin = this.#origins.get(item);
      if (origin === undefined || origin.partition !== partition) continue;
      byPartition.get(partition)!.push({ id: origin.id, dead: outcome === "deadLettered" });
    }
    for (const lease of renew) note(lease);
    if (byPartition.size === 0) return [];
    const expiresAt = Date.now() + milliseconds;
    const lost = new Set(
      await this.#scripts.record(
        records[0]?.lease.owner ?? renew[0]!.owner,
        milliseconds,
        byPartition,
      ),
    );
    const lostLeases: Lease[] = [];
    for (const [partition, held] of leases) {
      for (const lease of new Set(held)) {
        if (lost.has(partition)) lostLeases.push(lease);
        else lease.expiresAt = expiresAt;
      }
    }
    return lostLeases;
  }

  async release(lease: Lease, milliseconds: number): Promise<"released" | "waiting" | "lost"> {
    const expiresAt = Date.now() + milliseconds;
    const result = await this.#scripts.release(
      this.#partition(lease.lane),
      lease.owner,
      milliseconds,
      false,
    );
    if (result === "waiting") lease.expiresAt = expiresAt;
    return result;
  }

  async handBack(lease: Lease): Promise<void> {
    await this.#scripts.release(this.#partition(lease.lane), lease.owner, 0, true);
  }

  async close(): Promise<void> {
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    const subscribing = this.#subscribing;
    this.#subscribing = undefined;
    if (subscriber === undefined) return;
    subscriber.destroy();
    await subscribing?.catch(() => {});
  }

  /** Opens the wake-up connection once someone listens. */
  #subscribe(): void {
    if (this.#subscriber !== undefined) return;
    const subscriber = this.#client.duplicate();
    this.#subscriber = subscriber;
    subscriber.on("error", (error) => {
      if (this.#subscriber !== subscriber) return;
      this.#report(`The Redis queue's wake-up connection failed (workers poll meanwhile)`, error);
    });
    const wake = (message: string) => {
      for (const listener of this.#listeners) void listener(message);
    };
    this.#subscribing = subscriber.connect()
      .then(() => subscriber.subscribe(this.#scripts.channel, wake))
      .catch((error) => {
        if (this.#subscriber === subscriber) {
          this.#report(
            "Could not subscribe to the Redis queue's wake-ups (workers poll instead)",
            error,
          );
        }
      });
  }

  #report(message: string, error: unknown): void {
    const text = redactSecrets(error instanceof Error ? error.message : String(error));
    safeReport(this.#settings.reporter, { source: "queue", message: `${message}: ${text}` });
  }

  /** The text of an update's key: its first key, or `update <id>` without one. */
  #keyOf(update: Y): string {
    const ctx = new Context(update as unknown as Update, undefined as never, undefined as never);
    const keys = keysOf(this.#settings.key(ctx as C), "redisQueue() key function");
    return keys[0] ?? `update ${update.update_id}`;
  }

  /** The partition of a key (FNV-1a, 32 bits). */
  #partitionOf(key: string): number {
    let hash = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) {
      hash ^= key.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193);
    }
    return (hash >>> 0) % this.#settings.partitions;
  }

  #partition(lane: string): number {
    const partition = Number(lane);
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.#settings.partitions) {
      throw new RangeError(
        `Cannot use Redis queue lane as it must be a partition number from 0 to ${
          this.#settings.partitions - 1
        }: current value is ${show(lane)}`,
      );
    }
    return partition;
  }
}
