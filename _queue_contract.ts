// The contract between a queue and its store: what `runFrom()` and
// `webhookTo()` call, and what an engine (`kvQueue()`, `redisQueue()`)
// implements. queue.ts re-exports it, and its documentation shows it. Not
// exported by mod.ts.

import type { Update } from "./_deps.ts";
import type { Outcome } from "./_sink_contract.ts";

/**
 * A Telegram update, as grammY's `Update` type (`grammy/types`) describes it:
 * what a queue holds unless you give it another type.
 *
 * @internal
 */
type TelegramUpdate = Update;

/**
 * How the processing of a queued update ended: the sink's outcomes, or
 * `"deadLettered"` when holders of its lane died `maxAttempts` times while
 * it was being run (it then moves to the engine's dead letters).
 */
export type QueueOutcome = Outcome | "deadLettered";

/**
 * A worker's hold on a lane. A lane is what one worker at a time reads: for
 * Deno KV the inbox of one key, for a partitioned engine (Redis Streams) a
 * partition holding many keys. An engine may add fields (a versionstamp, a
 * fencing token) and update them in place when it writes the lease.
 */
export interface Lease {
  /** The lane held. */
  readonly lane: string;
  /** The worker holding it (unique per `runFrom` handle). */
  readonly owner: string;
  /** `Date.now()` after which another worker may take the lane over, unless renewed. */
  expiresAt: number;
}

/** An update read from a lane, with what the worker needs to run and record it. */
export interface QueuedUpdate<Y> {
  /** The update as it was stored. */
  readonly update: Y;
  /**
   * Its ordering key within the lane: updates of one key run one at a time,
   * in the order `read` returns them; different keys of a lane may overlap.
   * For a lane that is one key's inbox, every update has that key.
   */
  readonly key: string;
  /**
   * How many holders of its lane died (their lease expired and was taken
   * over) while this update was being run. The worker dead-letters it
   * instead of running it once this reaches `maxAttempts`.
   */
  readonly attempts: number;
}

/** The outcome of one update, to record in the lane of `lease`. */
export interface QueueRecord<Y> {
  /** The lease under which it was read. */
  readonly lease: Lease;
  /** The update, as `read` returned it. */
  readonly item: QueuedUpdate<Y>;
  /** How it ended. */
  readonly outcome: QueueOutcome;
}

/**
 * The storage side of a queue: what `webhookTo()` and `runFrom()` need, and
 * all that an engine module writes. The ordering, leasing, batching and
 * sink logic live in `runFrom()`, once for every engine.
 *
 * Contract (every engine keeps it; `runFrom` relies on it):
 * - `store` is durable and idempotent by `update_id`.
 * - At most one live lease per lane: `lease` and every write made under a
 *   lease (`record`, `release`, `handBack`) are atomic check-and-set on the
 *   lease, so a worker whose lease was taken over can no longer change the lane.
 * - An update leaves its lane only in the write that records its outcome.
 * - `release` removes the lease only if the lane is empty, checked in the
 *   same atomic write: an update stored concurrently is either seen by the
 *   holder (which keeps going) or finds the lane free (and wakes a worker).
 *   That is what makes a lost wake-up impossible.
 * - Wake-ups are hints: they may be repeated, late, concurrent or missing;
 *   `lanes()` (polled) is the ground truth.
 * - A partitioned engine (Redis Streams: a lane is a partition of many
 *   keys, rarely empty) rebalances by asking a worker that holds more than
 *   its share to give a lane up: `read` then returns no update although some
 *   wait, and the `release` that follows frees the lane anyway and wakes
 *   another worker. The worker has recorded everything it read from the
 *   lane by then (it lets a lane go only after that, reading ahead or not),
 *   so the hand-over keeps the order, runs nothing twice, and loses no
 *   wake-up.
 *
 * @typeParam Y The type of the updates (grammY's `Update` by default)
 */
export interface QueueEngine<Y extends { update_id: number } = TelegramUpdate> {
  /**
   * Stores a batch durably, idempotently by `update_id` (a repeated store of
   * the same update stores nothing new), each in its lane, and wakes a
   * worker for each lane. Resolves only once the storage acknowledged it;
   * rejects if it did not (then nothing of a rejected update may run twice
   * because of a retry: the dedupe covers it).
   */
  store(updates: Y[]): Promise<void>;
  /**
   * Lanes that may hold updates, at most `limit`, in no promised order.
   * Workers call it on start and every `pollMilliseconds`.
   */
  lanes(limit: number): Promise<string[]>;
  /**
   * Calls `wake(lane)` when updates may have been stored in `lane` (a hint,
   * see the contract). `wake` may return a promise that settles once the
   * worker is done with the lane: an engine whose wake-ups keep a process
   * alive (Deno Deploy's queue) awaits it. Returns a function that stops
   * the calls.
   */
  listen(wake: (lane: string) => Promise<void> | undefined): () => void;
  /**
   * Takes the lease of `lane` for `owner` for `milliseconds`, if it is free,
   * expired or handed back. Taking over an expired lease counts one more
   * attempt for the update(s) its holder was running. Resolves `undefined`
   * if another worker holds a live lease.
   */
  lease(lane: string, owner: string, milliseconds: number): Promise<Lease | undefined>;
  /**
   * The oldest `limit` updates of a held lane whose outcome is not recorded,
   * in lane order (`update_id` order within a key). The caller records or
   * hands back everything it read before it reads again.
   */
  read(lease: Lease, limit: number): Promise<QueuedUpdate<Y>[]>;
  /**
   * Optional: the next `limit` updates of a held lane after all those read
   * under `lease` (by `read` or `readNext`), recorded or not. An engine
   * whose lanes only grow at their end (a stream) offers it; the worker then
   * reads a lane ahead while what it read before still runs, instead of
   * recording all it read before reading again. Updates read this way count
   * as read for `lease`'s attempts, as those of `read` do.
   */
  readNext?(lease: Lease, limit: number): Promise<QueuedUpdate<Y>[]>;
  /**
   * Records outcomes, removing their updates, and renews every lease in
   * `renew` (and the leases of `records`) to `milliseconds` from now, in as
   * few atomic writes as the storage allows; each lane's part only if its
   * lease is still this worker's. Resolves with the leases found lost
   * (taken over): their records were not written.
   *
   * A worker renews (`record([], leases)`) on its own schedule, while a
   * write of outcomes, a `release` or a `handBack` of the same lease may be
   * on its way: a renewal must not make those fail (keep the expiry apart
   * from what their check-and-set compares). Those other writes of one
   * lease come one at a time.
   */
  record(records: QueueRecord<Y>[], renew: Lease[], milliseconds: number): Promise<Lease[]>;
  /**
   * Removes the lease if its lane holds no update (or, for a partitioned
   * engine, if the worker holds more than its share: see the contract), in
   * one atomic write. The caller has recorded everything it read under the
   * lease.
   * Resolves `"released"`; `"waiting"` if updates are waiting (the lease is
   * kept and renewed to `milliseconds` from now: read again); `"lost"` if
   * the lease was taken over.
   */
  release(lease: Lease, milliseconds: number): Promise<"released" | "waiting" | "lost">;
  /**
   * Gives a lane back without a death being counted (on `stop()`): another
   * worker may take it at once, and is woken.
   */
  handBack(lease: Lease): Promise<void>;
}
