/**
 * Webhooks on Deno Deploy (and anywhere Deno KV runs): `webhookToKv(kv)`
 * stores each update Telegram posts in its chat's inbox in Deno KV and
 * answers at once; `runFromKv(bot, kv)` runs the inboxes with your bot, in
 * `update_id` order per chat, across any number of isolates or processes
 * sharing the KV. `kvQueue(kv)` is the engine behind both, for `webhookTo`
 * and `runFrom` of `queue.ts`.
 *
 * ```ts ignore
 * import { Bot } from "grammy";
 * import { runFromKv, webhookToKv } from "@grammyx/runner/kv_queue";
 *
 * const bot = new Bot(Deno.env.get("BOT_TOKEN")!);
 * const kv = await Deno.openKv();
 * Deno.serve(webhookToKv(kv, { secretToken: Deno.env.get("WEBHOOK_SECRET")! }));
 * runFromKv(bot, kv);
 * ```
 *
 * @module
 */

import type { Context, Update } from "./_deps.ts";
import { delay } from "./_async.ts";
import { checkedPrefix, LIMITS, valueBytes } from "./_kv_parts.ts";
import { chatOrSender, firstKeyOf } from "./_update_keys.ts";
import { isFunction, knownOptions, optionalObject, show } from "./_validate.ts";
import {
  type Lease,
  type QueueBot,
  type QueuedUpdate,
  type QueueEngine,
  type QueueOutcome,
  type QueueRecord,
  runFrom,
  type RunFromOptions,
  UpdateTooLargeError,
  type WebhookOptions,
  webhookTo,
} from "./queue.ts";
import type { RunnerHandle } from "./runner.ts";
import type { Constraint } from "./sequentialize.ts";

export type { Constraint };

/**
 * A Telegram update, as grammY's `Update` type (`grammy/types`) describes it:
 * what a queue holds unless you give it another type.
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
 * Options of `kvQueue()`, shared by `webhookToKv()` and `runFromKv()`.
 *
 * @typeParam C The context the key function gets (grammY's `Context`)
 */
export interface KvQueueOptions<C extends { update: { update_id: number } } = UpdateContext> {
  /**
   * The KV key prefix under which the queue lives. Give ingress and workers
   * the same one; two bots on one KV need two.
   *
   * @default {["grammyx-queue"]}
   */
  prefix?: Deno.KvKey;
  /**
   * The key of an update, with `sequentialize()`'s signature: updates with
   * one key run one at a time, in `update_id` order, across all workers. It
   * gets a grammY `Context` around the update (no `api` calls, no plugin
   * state such as `ctx.session`) and returns a string, a number or a bigint
   * (`5`, `5n` and `"5"` are one key), an array (unlike `sequentialize()`,
   * the update goes under its first key only), or a falsy value for none:
   * an update without a key is its own key. Used when storing (by the
   * ingress); a key function that throws makes the ingress answer 500.
   *
   * @default {(ctx) => ctx.chat?.id ?? ctx.from?.id ?? ctx.pollAnswer?.user?.id}
   */
  key?: (ctx: C) => Constraint;
}

/** Options of `webhookToKv()`: the queue's and the webhook handler's. */
export interface WebhookToKvOptions<C extends { update: { update_id: number } } = UpdateContext>
  extends KvQueueOptions<C>, WebhookOptions {}

/** Options of `runFromKv()`: the queue's and the worker's. */
export interface RunFromKvOptions<
  Y = TelegramUpdate,
  C extends { update: { update_id: number } } = UpdateContext,
> extends KvQueueOptions<C>, RunFromOptions<Y> {}

/** Deno KV's limit on the checks of one atomic operation. */
const MAX_CHECKS = 100;
/** Updates per store commit: 1 check and 3 mutations each, plus a wake-up per lane. */
const STORE_CHUNK = 50;
/** Bytes a stored update adds to its commit besides its value (keys, dedupe record, sentinel, wake-up). */
const STORE_OVERHEAD = 1_000;
/** Leases per record commit: each is a check, and its sentinel another when the lane is let go. */
const LEASE_CHUNK = Math.floor(MAX_CHECKS / 2) - 5;
/** How long Telegram keeps an update, and so how long a delivery may be repeated. */
const DEDUPE_MILLISECONDS = 24 * 60 * 60 * 1000;
/** The marker of this module's wake-up messages on the KV queue. */
const WAKE = "grammyx-queue:wake";

/**
 * A lease as the KV engine holds it. Its entry (`lease/<lane>`: owner, head,
 * attempts) is written when the lease is taken and when it ends, never in
 * between, so its versionstamp is the fencing token every write under the
 * lease checks. Renewals write only the expiry (`expiry/<lane>`), which the
 * writes under the lease do not check: a renewal never makes them fail.
 */
interface KvLease extends Lease {
  /** The versionstamp of the lease entry, written when the lease was taken. */
  versionstamp: string;
  /** The update at the head of the lane when the lease was taken, and its deaths. */
  head: number | null;
  attempts: number;
  /**
   * The versionstamp of the lane's sentinel before the last `read`, if that
   * read returned all the lane held: then the lane is empty once those
   * updates are recorded, unless the sentinel changed since.
   */
  emptyAt?: string | null | undefined;
  /** The ids the last `read` returned and not recorded yet. */
  unrecorded?: Set<number>;
  /** Let go in the commit that recorded the last of them (see `#recordChunk`). */
  released?: boolean;
}

/** The value of a lease entry. `owner: null` is a lane handed back (free, deaths kept). */
interface LeaseValue {
  owner: string | null;
  head: number | null;
  attempts: number;
}

/** A dead letter: an update that was being run when `attempts` workers died. */
export interface DeadLetter<Y = TelegramUpdate> {
  /** The update. */
  update: Y;
  /** Its lane (`k:` and its key, or `u:` and its id for an update without a key). */
  lane: string;
  /** The worker deaths it caused. */
  attempts: number;
  /** `Date.now()` when it moved here. */
  at: number;
}

/** The Deno KV engine, with a look at what it holds. */
export interface KvQueue<Y extends { update_id: number } = TelegramUpdate> extends QueueEngine<Y> {
  /** The dead letters, oldest id first (at `[...prefix, "dead", update_id]`). */
  deadLetters(): Promise<DeadLetter<Y>[]>;
  /** How many updates were recorded with each outcome, since the queue was created. */
  counts(): Promise<Record<QueueOutcome, number>>;
}

/**
 * Creates the Deno KV queue engine. Keys under `prefix`: `seen/<id>` (a
 * dedupe record, expiring after 24 h), `lane/<lane>` (one per lane with
 * updates: the lane index, and the sentinel that makes "release only if
 * empty" atomic), `inbox/<lane>/<id>` (the updates), `lease/<lane>` and
 * `expiry/<lane>`, `dead/<id>`, `count/<outcome>`. Wake-ups go through `kv.enqueue`, and
 * `listen` calls `kv.listenQueue` once per `Deno.Kv` handle: if your bot
 * listens on the KV queue itself, give the queue a handle of its own.
 *
 * @param kv An open `Deno.Kv` (`Deno.openKv()`, or a file: `Deno.openKv("./bot.kv")`)
 * @param options Prefix and key function
 * @returns The engine, for `webhookTo()` and `runFrom()`
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kvQueue } from "@grammyx/runner/kv_queue";
 *
 * using kv = await Deno.openKv(":memory:");
 * const queue = kvQueue(kv, { prefix: ["bot-a"] });
 * await queue.store([{ update_id: 1, message: { chat: { id: 5 } } }] as never);
 * await queue.store([{ update_id: 1, message: { chat: { id: 5 } } }] as never); // a repeat
 * assert.deepEqual(await queue.lanes(10), ["k:5"]);
 * ```
 */
export function kvQueue<
  Y extends { update_id: number } = TelegramUpdate,
  C extends { update: { update_id: number } } = UpdateContext,
>(
  kv: Deno.Kv,
  options: KvQueueOptions<C> = {},
): KvQueue<Y> {
  const subject = "Cannot create KV queue";
  checkKv(subject, kv);
  optionalObject(subject, "options", options);
  knownOptions(subject, options, ["prefix", "key"]);
  return new KvEngine<Y>(kv, checkedQueueOptions(subject, options));
}

/**
 * Creates the webhook handler that stores updates in Deno KV: `webhookTo()`
 * over `kvQueue()`. Pass it to `Deno.serve`.
 *
 * @param kv An open `Deno.Kv`
 * @param options The queue's (`prefix`, `key`) and the handler's (`secretToken`, `maxBodyBytes`, `reporter`)
 * @returns The request handler
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { webhookToKv } from "@grammyx/runner/kv_queue";
 *
 * using kv = await Deno.openKv(":memory:");
 * const handler = webhookToKv(kv, { maxBodyBytes: 10 });
 * const response = await handler(new Request("http://bot/", { method: "POST", body: "x".repeat(11) }));
 * assert.equal(response.status, 413);
 * ```
 */
export function webhookToKv<
  Y extends { update_id: number } = TelegramUpdate,
  C extends { update: { update_id: number } } = UpdateContext,
>(
  kv: Deno.Kv,
  options: WebhookToKvOptions<C> = {},
): (request: Request) => Promise<Response> {
  const subject = "Cannot create webhook handler";
  checkKv(subject, kv);
  optionalObject(subject, "options", options);
  const { prefix, key, ...rest } = options;
  const queue = new KvEngine<Y>(kv, checkedQueueOptions(subject, { prefix, key }));
  return webhookTo(queue, rest);
}

/**
 * Runs the updates stored by `webhookToKv()` with your bot: `runFrom()` over
 * `kvQueue()`. Start it in as many isolates or processes as you like.
 *
 * @param bot A grammY bot
 * @param kv An open `Deno.Kv`, the same database the ingress writes to
 * @param options The queue's (`prefix`) and the worker's (`concurrency`, `leaseMilliseconds`, …)
 * @returns A handle to stop the worker, wait for it, and read its stats
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runFromKv, webhookToKv } from "@grammyx/runner/kv_queue";
 *
 * using kv = await Deno.openKv(":memory:");
 * let handled = 0;
 * const bot = { handleUpdate: async () => void handled++, errorHandler: () => {} };
 * const worker = runFromKv(bot, kv, { pollMilliseconds: 10 });
 * const post = webhookToKv(kv);
 * await post(new Request("http://bot/", { method: "POST", body: '{"update_id":7}' }));
 * while (handled < 1) await new Promise((ok) => setTimeout(ok, 5));
 * await worker.stop();
 * assert.equal(handled, 1);
 * ```
 */
export function runFromKv<
  Y extends { update_id: number } = TelegramUpdate,
  R = unknown,
  C extends { update: { update_id: number } } = UpdateContext,
>(
  bot: QueueBot<Y, R>,
  kv: Deno.Kv,
  options: RunFromKvOptions<Y, C> = {},
): RunnerHandle<Y> {
  const subject = "Cannot run worker";
  checkKv(subject, kv);
  optionalObject(subject, "options", options);
  const { prefix, key, ...rest } = options;
  const queue = new KvEngine<Y>(kv, checkedQueueOptions(subject, { prefix, key }));
  return runFrom(bot, queue, rest);
}

function checkKv(subject: string, kv: unknown): void {
  const methods = ["atomic", "get", "getMany", "list", "enqueue", "listenQueue"];
  if (
    typeof kv !== "object" || kv === null ||
    methods.some((name) => typeof (kv as Record<string, unknown>)[name] !== "function")
  ) {
    throw new TypeError(`${subject} as 'kv' must be a Deno.Kv: current value is ${show(kv)}`);
  }
}

interface QueueSettings {
  prefix: Deno.KvKey;
  key: (ctx: never) => unknown;
}

function checkedQueueOptions<C extends { update: { update_id: number } }>(
  subject: string,
  options: { [K in keyof KvQueueOptions<C>]?: KvQueueOptions<C>[K] | undefined },
): QueueSettings {
  const { prefix = ["grammyx-queue"], key = chatOrSender } = options;
  isFunction(subject, "key", key);
  return { prefix: checkedPrefix(subject, prefix), key: key as (ctx: never) => unknown };
}

/** Whether an error is SQLite saying another process holds the file for a moment. */
function isLocked(error: unknown): boolean {
  return error instanceof Error && /database is locked|busy/i.test(error.message);
}

/**
 * Runs a KV call, retrying "database is locked" (a local file shared by
 * processes) with short growing pauses, up to about 10 s in all.
 */
async function retryLocked<T>(call: () => Promise<T>): Promise<T> {
  for (let pause = 1, waited = 0;; pause = Math.min(200, pause * 2)) {
    try {
      return await call();
    } catch (error) {
      if (!isLocked(error) || waited > 10_000) throw error;
      await delay(pause * (0.5 + Math.random()));
      waited += pause;
    }
  }
}

/** The wake-up listeners of each `Deno.Kv`: `listenQueue` may be called once per handle. */
const listeners = new WeakMap<Deno.Kv, Set<(message: WakeMessage) => Promise<void> | undefined>>();

interface WakeMessage {
  [WAKE]: true;
  prefix: Deno.KvKey;
  lane: string;
}

function isWake(message: unknown): message is WakeMessage {
  return typeof message === "object" && message !== null && WAKE in message;
}

class KvEngine<Y extends { update_id: number }> implements KvQueue<Y> {
  readonly #kv: Deno.Kv;
  readonly #prefix: Deno.KvKey;
  readonly #prefixText: string;
  readonly #keyOf: (ctx: never) => unknown;
  /** The last lane `lanes()` returned, to go on after it next time. */
  #cursor: string | undefined;

  constructor(kv: Deno.Kv, settings: QueueSettings) {
    this.#kv = kv;
    this.#prefix = settings.prefix;
    this.#prefixText = JSON.stringify(settings.prefix.map(String));
    this.#keyOf = settings.key;
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#prefix, ...parts];
  }

  /** The lane of an update: its key's, or its own. */
  #laneOf(update: Y): string {
    const key = firstKeyOf(update, this.#keyOf, "The queue's key function");
    return key === undefined ? `u:${update.update_id}` : `k:${key}`;
  }

  async store(updates: Y[]): Promise<void> {
    if (!Array.isArray(updates)) {
      throw new TypeError(
        `Cannot store updates as 'updates' must be an array: current value is ${show(updates)}`,
      );
    }
    const unique = new Map<number, { update: Y; lane: string; size: number }>();
    for (const update of updates) {
      const id = (update as { update_id?: unknown })?.update_id;
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
        throw new TypeError(
          `Cannot store updates as each must have an integer 'update_id' >= 0: current value is ${
            show(id)
          }`,
        );
      }
      const size = valueBytes(update);
      if (size > LIMITS.value) {
        throw new UpdateTooLargeError(
          id,
          `Cannot store update ${id} as it does not fit in one Deno KV value (64 KiB)`,
        );
      }
      if (!unique.has(id)) unique.set(id, { update, lane: this.#laneOf(update), size });
    }
    // Chunks within Deno KV's limits of one atomic operation: checks, and
    // the total size of what it writes.
    let chunk: { update: Y; lane: string; size: number }[] = [];
    let bytes = 0;
    for (const entry of unique.values()) {
      if (chunk.length === STORE_CHUNK || bytes + entry.size > LIMITS.payload) {
        await this.#storeChunk(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(entry);
      bytes += entry.size + STORE_OVERHEAD;
    }
    if (chunk.length > 0) await this.#storeChunk(chunk);
  }

  /**
   * One atomic commit for a chunk: each update only if its dedupe record is
   * absent (a check), with its dedupe record, its inbox entry, its lane's
   * sentinel bumped and a wake-up per lane. A failed check means another
   * delivery of one of them was stored meanwhile: read the records and
   * commit the rest.
   */
  async #storeChunk(chunk: { update: Y; lane: string; size: number }[]): Promise<void> {
    let remaining = chunk;
    for (let attempt = 0; remaining.length > 0; attempt++) {
      const seen = await this.#getMany(
        remaining.map(({ update }) => this.#key("seen", update.update_id)),
      );
      remaining = remaining.filter((_, index) => seen[index]!.versionstamp === null);
      if (remaining.length === 0) return;
      const operation = this.#kv.atomic();
      const lanes = new Set<string>();
      for (const { update, lane } of remaining) {
        const seenKey = this.#key("seen", update.update_id);
        operation
          .check({ key: seenKey, versionstamp: null })
          .set(seenKey, true, { expireIn: DEDUPE_MILLISECONDS })
          .set(this.#key("inbox", lane, update.update_id), update)
          .sum(this.#key("lane", lane), 1n);
        lanes.add(lane);
      }
      for (const lane of lanes) {
        const message: WakeMessage = { [WAKE]: true, prefix: this.#prefix, lane };
        operation.enqueue(message);
      }
      const result = await retryLocked(() => operation.commit());
      if (result.ok) return;
      if (attempt > 100) {
        throw new Error("Cannot store updates as their dedupe records keep changing");
      }
    }
  }

  async #getMany(keys: Deno.KvKey[]): Promise<Deno.KvEntryMaybe<unknown>[]> {
    const found: Deno.KvEntryMaybe<unknown>[] = [];
    for (let start = 0; start < keys.length; start += 10) {
      found.push(...await retryLocked(() => this.#kv.getMany(keys.slice(start, start + 10))));
    }
    return found;
  }

  async lanes(limit: number): Promise<string[]> {
    const prefix = this.#key("lane");
    const list = async (start: Deno.KvKey | undefined) => {
      const lanes: string[] = [];
      const selector = start === undefined ? { prefix } : { prefix, start };
      for await (const entry of this.#kv.list(selector, { limit })) {
        const lane = entry.key.at(-1);
        if (typeof lane === "string" && lane !== this.#cursor) lanes.push(lane);
      }
      return lanes;
    };
    // Go on after the last lane returned, then wrap around: with more lanes
    // than `limit`, every one is seen in turn.
    const after = this.#cursor === undefined ? undefined : this.#key("lane", this.#cursor);
    const lanes = await retryLocked(() => list(after));
    if (lanes.length < limit && after !== undefined) {
      for (const lane of await retryLocked(() => list(undefined))) {
        if (lanes.length >= limit || lanes.includes(lane)) break;
        lanes.push(lane);
      }
    }
    this.#cursor = lanes.length === limit ? lanes.at(-1) : undefined;
    return lanes;
  }

  listen(wake: (lane: string) => Promise<void> | undefined): () => void {
    const prefix = this.#prefixText;
    const listener = (message: WakeMessage) =>
      JSON.stringify(message.prefix.map(String)) === prefix ? wake(message.lane) : undefined;
    let set = listeners.get(this.#kv);
    if (set === undefined) {
      const own = new Set<(message: WakeMessage) => Promise<void> | undefined>();
      listeners.set(this.#kv, set = own);
      // Settles when the KV closes. A message that is not a wake-up is
      // acknowledged and dropped: do not share this handle's queue.
      this.#kv.listenQueue(async (message: unknown) => {
        if (!isWake(message)) return;
        // On Deno Deploy the isolate lives while this runs: wait (a bounded
        // time) for the worker to be done with the lane.
        const work = [...own].map((listener) => listener(message));
        const bound = new AbortController();
        await Promise.race([Promise.allSettled(work), delay(25_000, bound.signal)]);
        bound.abort();
      }).catch(() => {});
    }
    set.add(listener);
    return () => void set.delete(listener);
  }

  async lease(lane: string, owner: string, milliseconds: number): Promise<Lease | undefined> {
    const key = this.#key("lease", lane);
    const expiryKey = this.#key("expiry", lane);
    const [entry, expiry] = await retryLocked(() =>
      this.#kv.getMany<[LeaseValue, number]>([key, expiryKey])
    );
    const now = Date.now();
    const previous = entry.value;
    const live = previous !== null && previous.owner !== null && (expiry.value ?? 0) > now;
    if (live) return undefined;
    let head = previous?.head ?? null;
    let attempts = previous?.attempts ?? 0;
    if (previous !== null && previous.owner !== null) {
      // Taking over an expired lease: its holder died (or stalled) while it
      // ran the head of the lane, since a holder records each update before
      // it starts the next of the key. Count one attempt for that update.
      const first = await this.#read(lane, 1);
      const id = first[0]?.update.update_id ?? null;
      attempts = id !== null && id === previous.head ? previous.attempts + 1 : id === null ? 0 : 1;
      head = id;
    }
    const value: LeaseValue = { owner, head, attempts };
    const expiresAt = now + milliseconds;
    // Both checked: a renewal of the expiry just now means its holder is alive.
    const result = await retryLocked(() =>
      this.#kv.atomic().check(entry).check(expiry).set(key, value).set(expiryKey, expiresAt)
        .commit()
    );
    if (!result.ok) return undefined; // another worker took it first, or its holder renewed
    const lease: KvLease = {
      lane,
      owner,
      expiresAt,
      versionstamp: result.versionstamp,
      head,
      attempts,
    };
    return lease;
  }

  async read(lease: Lease, limit: number): Promise<QueuedUpdate<Y>[]> {
    const held = lease as KvLease;
    // The sentinel first: a store after this read changes it (see release).
    const sentinel = await retryLocked(() => this.#kv.get(this.#key("lane", held.lane)));
    const items = await this.#read(held.lane, limit);
    held.emptyAt = items.length < limit ? sentinel.versionstamp : undefined;
    held.unrecorded = new Set(items.map((item) => item.update.update_id));
    return items.map((item) => ({
      ...item,
      attempts: item.update.update_id === held.head ? held.attempts : 0,
    }));
  }

  async #read(lane: string, limit: number): Promise<QueuedUpdate<Y>[]> {
    const items: QueuedUpdate<Y>[] = [];
    await retryLocked(async () => {
      items.length = 0;
      for await (const entry of this.#kv.list<Y>({ prefix: this.#key("inbox", lane) }, { limit })) {
        items.push({ update: entry.value, key: lane, attempts: 0 });
      }
    });
    return items;
  }

  async record(records: QueueRecord<Y>[], renew: Lease[], milliseconds: number): Promise<Lease[]> {
    // Group by lease: a lease's records go into one commit with its check.
    const groups = new Map<Lease, QueueRecord<Y>[]>();
    for (const lease of renew) groups.set(lease, []);
    for (const record of records) {
      const group = groups.get(record.lease);
      if (group === undefined) groups.set(record.lease, [record]);
      else group.push(record);
    }
    const lost: Lease[] = [];
    let chunk: [KvLease, QueueRecord<Y>[]][] = [];
    let mutations = 0;
    for (const [lease, group] of groups) {
      // Per lease: a set or three deletes; per record: a delete, a dead letter, a counter.
      const cost = 3 + 3 * group.length;
      if (chunk.length === LEASE_CHUNK || mutations + cost > LIMITS.mutations - 10) {
        lost.push(...await this.#recordChunk(chunk, milliseconds));
        chunk = [];
        mutations = 0;
      }
      chunk.push([lease as KvLease, group]);
      mutations += cost;
    }
    if (chunk.length > 0) lost.push(...await this.#recordChunk(chunk, milliseconds));
    return lost;
  }

  /**
   * One atomic commit: every lease of the chunk checked (still this
   * worker's, by versionstamp) and renewed, every record's update removed
   * from its inbox, dead letters written, counters bumped. A lane whose
   * records complete a read that returned all it held is let go in the same
   * commit, if its sentinel is unchanged since that read (as `release` would
   * do, one commit fewer). If a check fails, the leases that changed are
   * lost and leave the chunk, lanes whose sentinel changed stay held, and
   * the rest is committed again.
   */
  async #recordChunk(
    chunk: [KvLease, QueueRecord<Y>[]][],
    milliseconds: number,
  ): Promise<Lease[]> {
    const lost: Lease[] = [];
    let remaining = chunk;
    while (remaining.length > 0) {
      const now = Date.now();
      const expiresAt = now + milliseconds;
      const operation = this.#kv.atomic();
      const counts = new Map<QueueOutcome, bigint>();
      const releasing = new Set<KvLease>();
      for (const [lease, group] of remaining) {
        const lane = lease.lane;
        operation.check({ key: this.#key("lease", lane), versionstamp: lease.versionstamp });
        const ids = new Set(group.map(({ item }) => item.update.update_id));
        const last = group.length > 0 && lease.emptyAt !== undefined &&
          [...lease.unrecorded ?? []].every((id) => ids.has(id));
        if (last) {
          releasing.add(lease);
          operation
            .check({ key: this.#key("lane", lane), versionstamp: lease.emptyAt! })
            .delete(this.#key("lease", lane))
            .delete(this.#key("expiry", lane))
            .delete(this.#key("lane", lane));
        } else {
          operation.set(this.#key("expiry", lane), expiresAt);
        }
        for (const { item, outcome } of group) {
          const id = item.update.update_id;
          operation.delete(this.#key("inbox", lane, id));
          if (outcome === "deadLettered") {
            const letter: DeadLetter<Y> = {
              update: item.update,
              lane,
              attempts: item.attempts,
              at: now,
            };
            operation.set(this.#key("dead", id), letter);
          }
          counts.set(outcome, (counts.get(outcome) ?? 0n) + 1n);
        }
      }
      for (const [outcome, count] of counts) {
        operation.sum(this.#key("count", outcome), count);
      }
      const result = await retryLocked(() => operation.commit());
      if (result.ok) {
        for (const [lease, group] of remaining) {
          for (const { item } of group) lease.unrecorded?.delete(item.update.update_id);
          if (releasing.has(lease)) lease.released = true;
          else lease.expiresAt = Math.max(lease.expiresAt, expiresAt);
        }
        return lost;
      }
      const leases = await this.#getMany(
        remaining.map(([lease]) => this.#key("lease", lease.lane)),
      );
      const sentinels = await this.#getMany(
        [...releasing].map((lease) => this.#key("lane", lease.lane)),
      );
      let changed = false;
      [...releasing].forEach((lease, index) => {
        if (sentinels[index]!.versionstamp !== lease.emptyAt) {
          lease.emptyAt = undefined; // updates came in: the lane stays held
          changed = true;
        }
      });
      const kept = remaining.filter(([lease], index) => {
        if (leases[index]!.versionstamp === lease.versionstamp) return true;
        lost.push(lease);
        return false;
      });
      if (kept.length === remaining.length && !changed) {
        throw new Error("Cannot record outcomes as the commit failed with every check unchanged");
      }
      remaining = kept;
    }
    return lost;
  }

  async release(lease: Lease, milliseconds: number): Promise<"released" | "waiting" | "lost"> {
    const held = lease as KvLease;
    if (held.released) return "released"; // in the commit of its last outcomes
    const leaseKey = this.#key("lease", held.lane);
    const laneKey = this.#key("lane", held.lane);
    // The sentinel is bumped by every store in the lane. Read it before the
    // inbox: the commit below then fails if an update came in after the
    // inbox looked empty. After a read that returned the whole lane, all of
    // which is recorded now (the caller's part), its sentinel stands in for
    // a new look at the inbox.
    let sentinel: string | null;
    let waiting: boolean;
    if (held.emptyAt !== undefined) {
      sentinel = held.emptyAt;
      waiting = false;
    } else {
      sentinel = (await retryLocked(() => this.#kv.get(laneKey))).versionstamp;
      waiting = (await this.#read(held.lane, 1)).length > 0;
    }
    held.emptyAt = undefined;
    const operation = this.#kv.atomic()
      .check({ key: leaseKey, versionstamp: held.versionstamp })
      .check({ key: laneKey, versionstamp: sentinel });
    const expiresAt = Date.now() + milliseconds;
    const expiryKey = this.#key("expiry", held.lane);
    if (waiting) operation.set(expiryKey, expiresAt);
    else operation.delete(leaseKey).delete(expiryKey).delete(laneKey);
    const result = await retryLocked(() => operation.commit());
    if (result.ok) {
      if (!waiting) return "released";
      held.expiresAt = Math.max(held.expiresAt, expiresAt);
      return "waiting";
    }
    const current = await retryLocked(() => this.#kv.get(leaseKey));
    return current.versionstamp === held.versionstamp ? "waiting" : "lost";
  }

  async handBack(lease: Lease): Promise<void> {
    const held = lease as KvLease;
    if (held.released) return;
    const key = this.#key("lease", held.lane);
    // Free, but the head's deaths are kept: a graceful stop is not a death.
    const value: LeaseValue = { owner: null, head: held.head, attempts: held.attempts };
    const message: WakeMessage = { [WAKE]: true, prefix: this.#prefix, lane: held.lane };
    await retryLocked(() =>
      this.#kv.atomic().check({ key, versionstamp: held.versionstamp }).set(key, value)
        .delete(this.#key("expiry", held.lane)).enqueue(message).commit()
    );
  }

  async deadLetters(): Promise<DeadLetter<Y>[]> {
    const letters: DeadLetter<Y>[] = [];
    for await (const entry of this.#kv.list<DeadLetter<Y>>({ prefix: this.#key("dead") })) {
      letters.push(entry.value);
    }
    return letters;
  }

  async counts(): Promise<Record<QueueOutcome, number>> {
    const outcomes: QueueOutcome[] = ["handled", "failed", "timedOut", "deadLettered"];
    const entries = await this.#getMany(outcomes.map((outcome) => this.#key("count", outcome)));
    const counts = {} as Record<QueueOutcome, number>;
    outcomes.forEach((outcome, index) => {
      const value = entries[index]!.value;
      counts[outcome] = value instanceof Deno.KvU64 ? Number(value.value) : 0;
    });
    return counts;
  }
}
