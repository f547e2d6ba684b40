// The Redis Streams engine behind `redisQueue()`: the `QueueEngine` methods
// over the scripts of `_redis_scripts.ts`, the key and partition of an
// update, and the wake-up connection. Not exported by mod.ts.

import { firstKeyOf } from "./_update_keys.ts";
import { redactSecrets } from "./_redact.ts";
import { type Reporter, safeReport } from "./_report.ts";
import { type RedisClient, RedisScripts, type RedisSubscriber } from "./_redis_scripts.ts";
import { show } from "./_validate.ts";
import type { Constraint } from "./sequentialize.ts";
import type { Lease, QueuedUpdate, QueueEngine, QueueRecord } from "./_queue_contract.ts";

/** The checked options of `redisQueue()`. */
export interface Settings<C> {
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

/** The engine: each method one script call (see `_redis_scripts.ts`). */
export class RedisStreams<Y extends { update_id: number }, C> implements QueueEngine<Y> {
  readonly #client: RedisClient;
  readonly #settings: Settings<C>;
  readonly #scripts: RedisScripts;
  readonly #origins = new WeakMap<QueuedUpdate<Y>, Origin>();
  /** The id of the last entry each lease's reads returned. */
  readonly #lastRead = new WeakMap<Lease, string>();
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

  read(lease: Lease, limit: number): Promise<QueuedUpdate<Y>[]> {
    return this.#read(lease, limit, false);
  }

  /**
   * A stream only grows at its end: what comes after the last entry this
   * worker got under `lease` is new. Kept here, not in Redis, so that a read
   * whose answer was lost (a dropped connection) is read again.
   */
  readNext(lease: Lease, limit: number): Promise<QueuedUpdate<Y>[]> {
    return this.#read(lease, limit, true);
  }

  async #read(lease: Lease, limit: number, next: boolean): Promise<QueuedUpdate<Y>[]> {
    const partition = this.#partition(lease.lane);
    const after = next ? this.#lastRead.get(lease) : undefined;
    const entries = await this.#scripts.read(partition, lease.owner, limit, after);
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
    if (entries.length > 0) this.#lastRead.set(lease, entries.at(-1)!.id);
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
    return firstKeyOf(update, this.#settings.key, "redisQueue() key function") ??
      `update ${update.update_id}`;
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

/** The update in `data`, or `undefined` unless it is JSON of an object with an integer `update_id`. */
function parse(data: string): { update_id: number } | undefined {
  try {
    const value = JSON.parse(data);
    return Number.isSafeInteger(value?.update_id) ? value : undefined;
  } catch {
    return undefined;
  }
}
