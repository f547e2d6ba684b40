// The worker side of `runFrom()`, written once for every queue engine: it
// leases lanes, reads them, hands each key's next update to the sink only
// when the key's previous update is recorded, records outcomes in batches,
// renews leases, and lets lanes go. It is the `UpdateSupplier` of the
// runner that `runFrom()` composes; the sink and the runner are the ones
// `run()` uses. Not exported by mod.ts.
//
// Why no update is lost or run twice outside a crash:
// - An update leaves its lane only in the engine write that records its
//   outcome, and that write happens after the sink settled it (for a timed
//   out update: after its task really ended).
// - One worker at a time holds a lane: the engine's lease is taken and every
//   later write under it (record, release, hand back) is a check-and-set on
//   it. This worker makes those writes one at a time (the writer below), so
//   its own writes never race each other's check; renewals run apart (a
//   slow write must not let a live lease expire), and the engine keeps them
//   from conflicting with those writes (see `QueueEngine.record`).
// - A worker whose renewal is late renews before it starts anything more
//   from the lane, and starts nothing once its lease may have expired: only
//   a lease that expired under a live holder (a storage stall longer than
//   `leaseMilliseconds`) lets a second worker run an update that is running.
// - A key's next update is handed out only once the previous one's outcome
//   is written (KeyedChains per key, each link ending at that write), so at
//   most one update per key is run and not recorded. That bounds what a
//   crash can repeat (the updates in flight) and tells the engine which
//   update a dead holder was running (the head of the key), for `maxAttempts`.
// - A lane is let go only through `release`, which the engine does only if
//   the lane is empty in the same atomic write; otherwise this worker reads
//   again. An update stored meanwhile is thus either read by this holder or
//   finds the lane free, and its wake-up (or the next poll) leases it anew:
//   no lost wake-up. Wake-ups are mere hints: a repeated or late one finds
//   the lane held (by us: ignored; by another: `lease` says no) or empty.

import { delay, Queue } from "./_async.ts";
import { KeyedChains } from "./_chain.ts";
import { clock, startTimer, stopTimer, type TimerId } from "./_clock.ts";
import { describe, redactError } from "./_redact.ts";
import { type Reporter, safeReport } from "./_report.ts";
import type {
  Lease,
  QueuedUpdate,
  QueueEngine,
  QueueOutcome,
  QueueRecord,
} from "./_queue_contract.ts";
import type { SupplierStats, UpdateSupplier } from "./source.ts";

/** What the supplier needs, checked and with defaults applied by `runFrom()`. */
export interface LaneSettings<Y extends { update_id: number }> {
  engine: QueueEngine<Y>;
  /** Unique per handle: the owner written in leases. */
  owner: string;
  leaseMilliseconds: number;
  pollMilliseconds: number;
  maxAttempts: number;
  /** How many lanes this worker holds at most. */
  maxLanes: number;
  /** Prepares the bot before the first update (grammY's `bot.init`). */
  init: (signal: AbortSignal) => Promise<void>;
  reporter: Reporter;
  /** Keeps the bot token out of reports. */
  token: string | undefined;
}

/** Updates read per lane at a time. */
const READ_LIMIT = 16;
/**
 * Updates of a lane read and not recorded at most, when its engine reads
 * ahead (`readNext`): 16 partitions of 48 keep the sink's default 500 busy.
 */
const OPEN_LIMIT = 3 * READ_LIMIT;
/** Outcomes written per engine call at most (the engine splits them further). */
const RECORD_LIMIT = 1_000;
/** Lease writes (release, hand back) between two writes of outcomes. */
const OPS_PER_WRITE = 4;
/** Lanes asked for per poll. */
const POLL_LIMIT = 1_000;
/** The pause after a failed storage call grows from this... */
const RETRY_MIN = 50;
/** ...to this. */
const RETRY_MAX = 5_000;

/** A lane this worker holds or is taking. */
interface Held {
  lease: Lease | undefined;
  lost: boolean;
  /** Released or handed back: no longer renewed. */
  ended: boolean;
  /** Some update read was left unrun (the worker is stopping): the lane is not empty. */
  skipped: boolean;
  /** Lost because its renewal came too late: it may still be ours, if no one took it over. */
  expired: boolean;
  /** Ends when the lane loop ends. */
  done: Promise<void>;
}

/** An update handed to the sink (or waiting in `#ready` to be). */
interface Offered<Y> {
  item: QueuedUpdate<Y>;
  held: Held;
  /** Ends the item's link in its key's chain: after its outcome is written, or once it cannot be. */
  settle: () => void;
}

/** A write under a lease that must wait for the outcomes before it. */
interface LeaseOp {
  run: () => Promise<void>;
}

/** The update supplier of `runFrom()`. */
export class LaneSupplier<Y extends { update_id: number }> implements UpdateSupplier<Y> {
  readonly #settings: LaneSettings<Y>;
  readonly #chains = new KeyedChains();
  /** Updates whose turn came, for the next `supply`. */
  readonly #ready = new Queue<Offered<Y>>();
  /** Updates handed to the sink, by the update object the sink settles. */
  readonly #offered = new Map<Y, Offered<Y>>();
  readonly #held = new Map<string, Held>();
  /** Lanes woken while this worker held `maxLanes` lanes. */
  readonly #wanted = new Set<string>();
  /** Outcomes to write, with the link each ends. */
  #pending: { record: QueueRecord<Y>; settle: () => void }[] = [];
  readonly #ops: LeaseOp[] = [];
  /** The renewal on its way, if any. */
  #renewing: Promise<void> | undefined;
  #writing: Promise<void> | undefined;
  #active = false;
  #initialized = false;
  #notify: (() => void) | undefined;
  #unlisten: (() => void) | undefined;
  #pollTimer: TimerId | undefined;
  #renewTimer: TimerId | undefined;
  #stats: SupplierStats = { calls: 0, failures: 0, lastSuccessAt: undefined };

  constructor(settings: LaneSettings<Y>) {
    this.#settings = settings;
  }

  async supply(batchSize: number, signal: AbortSignal): Promise<Y[]> {
    if (signal.aborted) return [];
    if (!this.#initialized) {
      await this.#init(signal);
      if (signal.aborted) return [];
    }
    if (!this.#active) this.#activate(signal);
    while (!signal.aborted) {
      const batch: Y[] = [];
      while (batch.length < batchSize && this.#ready.length > 0) {
        const offered = this.#ready.shift()!;
        // It may have waited for the sink past its lease (renewals stalled).
        if (this.#lapsed(offered.held)) {
          offered.settle(); // its lane went to another worker, which runs it
          continue;
        }
        this.#offered.set(offered.item.update, offered);
        batch.push(offered.item.update);
      }
      if (batch.length > 0) return batch;
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#notify = resolve;
      const onAbort = () => resolve();
      signal.addEventListener("abort", onAbort, { once: true });
      await promise;
      signal.removeEventListener("abort", onAbort);
      this.#notify = undefined;
    }
    return [];
  }

  /** The sink settled `update` (for a timed-out one: its task ended). */
  settled(update: Y, outcome: QueueOutcome): void {
    const offered = this.#offered.get(update);
    if (offered === undefined) return;
    this.#offered.delete(update);
    const lease = offered.held.lease!;
    this.#pending.push({ record: { lease, item: offered.item, outcome }, settle: offered.settle });
    this.#kick();
  }

  /** At the end of `stop()`: writes what finished and lets every lane go. */
  async confirm(signal?: AbortSignal): Promise<void> {
    this.#deactivate();
    const lanes = Promise.all([...this.#held.values()].map((held) => held.done));
    await new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      signal?.addEventListener("abort", () => resolve(), { once: true });
      lanes.then(() => this.#writing).then(() => this.#renewing).then(() => resolve());
    });
    // Past a deadline, lanes still running are no longer renewed: they
    // expire, and another worker runs what this one did not record.
    stopTimer(this.#renewTimer);
    this.#renewTimer = undefined;
  }

  /** What was handed to the sink and not recorded stays in the queue. */
  willResend(): boolean {
    return true;
  }

  stats(): SupplierStats {
    return { ...this.#stats };
  }

  async #init(signal: AbortSignal): Promise<void> {
    for (let pause = RETRY_MIN; !signal.aborted; pause = Math.min(RETRY_MAX, pause * 2)) {
      try {
        await this.#settings.init(signal);
        this.#initialized = true;
        return;
      } catch (error) {
        if (signal.aborted) return;
        this.#report(`Could not initialize the bot (retrying in ${pause} ms)`, error);
        await delay(pause, signal);
      }
    }
  }

  #activate(signal: AbortSignal): void {
    this.#active = true;
    signal.addEventListener("abort", () => this.#deactivate(), { once: true });
    this.#unlisten = this.#settings.engine.listen((lane) => this.#wake(lane));
    const renewEvery = Math.max(1, Math.floor(this.#settings.leaseMilliseconds / 3));
    const renew = () => {
      void this.#renew();
      this.#renewTimer = startTimer(renew, renewEvery);
    };
    stopTimer(this.#renewTimer);
    this.#renewTimer = startTimer(renew, renewEvery);
    void this.#poll();
  }

  /** Takes no new work: what the sink has still runs and is recorded. */
  #deactivate(): void {
    if (!this.#active) return;
    this.#active = false;
    this.#unlisten?.();
    this.#unlisten = undefined;
    stopTimer(this.#pollTimer);
    this.#pollTimer = undefined;
    this.#wanted.clear();
    // Not given to the sink yet: they stay in the queue for the next worker.
    for (let offered; (offered = this.#ready.shift()) !== undefined;) offered.settle();
    this.#notify?.();
  }

  async #poll(): Promise<void> {
    if (!this.#active) return;
    try {
      this.#stats.calls++;
      const lanes = await this.#settings.engine.lanes(POLL_LIMIT);
      this.#succeeded();
      for (const lane of lanes) this.#wake(lane);
    } catch (error) {
      this.#failed("Could not list the queue's lanes", error);
    }
    if (this.#active) {
      this.#pollTimer = startTimer(() => this.#poll(), this.#settings.pollMilliseconds);
    }
  }

  /**
   * A hint that `lane` may hold updates: lease it unless this worker holds
   * it already (its loop reads until the lane is empty) or holds enough.
   */
  #wake(lane: string): Promise<void> | undefined {
    if (!this.#active) return undefined;
    const current = this.#held.get(lane);
    if (current !== undefined) return current.done;
    if (this.#held.size >= this.#settings.maxLanes) {
      this.#wanted.add(lane);
      return undefined;
    }
    const held: Held = {
      lease: undefined,
      lost: false,
      ended: false,
      skipped: false,
      expired: false,
      done: Promise.resolve(),
    };
    this.#held.set(lane, held);
    held.done = this.#work(lane, held).finally(() => {
      this.#held.delete(lane);
      const next = this.#wanted.values().next();
      if (!next.done) {
        this.#wanted.delete(next.value);
        this.#wake(next.value);
      }
    });
    return held.done;
  }

  /** The lane loop: lease, read, run key by key, record; release only when empty. */
  async #work(lane: string, held: Held): Promise<void> {
    const { engine, owner, leaseMilliseconds } = this.#settings;
    try {
      held.lease = await engine.lease(lane, owner, leaseMilliseconds);
      this.#succeeded();
    } catch (error) {
      this.#failed(`Could not lease lane ${lane}`, error);
      return; // the next poll tries again
    }
    if (held.lease === undefined) return; // another worker holds it
    const lease = held.lease;
    // An engine that reads on after what it read before lets the lane be
    // read ahead: the next read starts once room for READ_LIMIT more is
    // within OPEN_LIMIT, not once all that was read is recorded.
    const readNext = engine.readNext?.bind(engine);
    const open = new OpenCount();
    /** Read from the oldest: all read is recorded and the lane still holds updates. */
    let rescan = false;
    let pause = RETRY_MIN;
    while (this.#active && !held.lost) {
      let items: QueuedUpdate<Y>[];
      try {
        this.#stats.calls++;
        items = readNext === undefined || rescan
          ? await engine.read(lease, READ_LIMIT)
          : await readNext(lease, READ_LIMIT);
        rescan = false;
        this.#succeeded();
      } catch (error) {
        this.#failed(`Could not read lane ${lane}`, error);
        await delay(pause);
        pause = Math.min(RETRY_MAX, pause * 2);
        continue;
      }
      if (items.length > 0) {
        pause = RETRY_MIN;
        // Each item joins its key's chain; its link ends once its outcome is
        // written, so the next item of the key starts only after that.
        for (const item of items) {
          open.add(this.#chains.run([item.key], () => this.#take(held, lease, item)));
        }
        // After a full read, more may wait: read again once few are open.
        // After a short one, wait for all that is open first, as a lane is
        // let go only when all it read is recorded.
        const full = items.length === READ_LIMIT;
        await open.atMost(full && readNext !== undefined ? OPEN_LIMIT - READ_LIMIT : 0);
        if (full || !this.#active || held.lost) continue;
      } else {
        await open.atMost(0);
        if (!this.#active || held.lost) break;
      }
      // Everything read is recorded: let go, unless the engine sees updates
      // that came meanwhile (then read them: see the comment at the top).
      const released = await this.#leaseOp(async () => {
        const result = await engine.release(lease, leaseMilliseconds);
        // Set within the writer, so that its next renewal leaves the lease out.
        if (result === "released") held.ended = true;
        return result;
      });
      if (released === "released") return;
      if (released === "lost") held.lost = true;
      // Whatever a read ahead may have missed, a read from the oldest finds.
      if (released === "waiting") rescan = true;
      if (released === undefined) {
        await delay(pause);
        pause = Math.min(RETRY_MAX, pause * 2);
      }
    }
    await open.atMost(0);
    if (held.expired) {
      // If no one took the lane over, give it back at once (a check-and-set
      // on the lease: a no-op if someone did), so that no death is counted.
      await this.#leaseOp(async () => {
        held.ended = true;
        await engine.handBack(lease);
      });
    } else if (!held.lost) {
      // Stopping: let go of an empty lane; hand back one with updates left,
      // which stay for the next worker.
      await this.#leaseOp(async () => {
        held.ended = true;
        const released = held.skipped ? "waiting" : await engine.release(lease, leaseMilliseconds);
        if (released === "waiting") await engine.handBack(lease);
      });
    }
  }

  /** An item's turn came: hand it to the sink, or dead-letter it. Resolves when recorded. */
  #take(held: Held, lease: Lease, item: QueuedUpdate<Y>): Promise<void> {
    if (!this.#active || held.lost) {
      held.skipped = true;
      return Promise.resolve();
    }
    if (lease.expiresAt - this.#settings.leaseMilliseconds / 3 <= clock().now()) {
      // The renewal is late (a busy storage, a stalled event loop): renew
      // before starting anything, so that the lease outlasts the start.
      return this.#renewNow().then(async () => {
        if (lease.expiresAt - this.#settings.leaseMilliseconds / 3 <= clock().now()) {
          await delay(RETRY_MIN); // the renewal failed: do not spin on the storage
        }
        if (this.#lapsed(held)) return; // not renewed in time
        return this.#take(held, lease, item);
      });
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    if (item.attempts >= this.#settings.maxAttempts) {
      const id = item.update.update_id;
      safeReport(this.#settings.reporter, {
        source: "queue",
        message:
          `Update ${id} of lane ${lease.lane} was being run when ${item.attempts} workers died: moved to the dead letters`,
      });
      this.#pending.push({ record: { lease, item, outcome: "deadLettered" }, settle: resolve });
      this.#kick();
      return promise;
    }
    this.#ready.push({ item, held, settle: resolve });
    this.#notify?.();
    return promise;
  }

  /**
   * Renews every lease held, one renewal at a time. Renewals do not go
   * through the writer: the engine keeps them from conflicting with the
   * writes under a lease (see `QueueEngine.record`), so a slow write of
   * outcomes never holds up a renewal and lets a live lease expire.
   */
  #renew(): Promise<void> {
    this.#renewing ??= (async () => {
      const leases = [...this.#held.values()].flatMap((held) =>
        held.lease !== undefined && !held.lost && !held.ended ? [held.lease] : []
      );
      if (leases.length === 0) return;
      try {
        const lost = new Set(
          await this.#settings.engine.record([], leases, this.#settings.leaseMilliseconds),
        );
        this.#succeeded();
        this.#markLost(lost);
      } catch (error) {
        this.#failed("Could not renew leases", error);
      }
    })().finally(() => this.#renewing = undefined);
    return this.#renewing;
  }

  /** Renews every lease held, in a renewal that starts now (not one on its way). */
  #renewNow(): Promise<void> {
    const renewing = this.#renewing;
    return renewing === undefined ? this.#renew() : renewing.then(() => this.#renew());
  }

  /**
   * Whether `held` is lost, marking it so once its lease lapsed: another
   * worker may hold the lane now, so this one runs nothing more from it.
   */
  #lapsed(held: Held): boolean {
    if (held.lost) return true;
    if (held.lease === undefined || held.lease.expiresAt > clock().now()) return false;
    held.lost = true;
    held.expired = true;
    return true;
  }

  /** Marks the lanes of `lost` leases lost: they run nothing more here. */
  #markLost(lost: Set<Lease>): void {
    // By lease, not by lane: a lane let go and leased again has a new lease.
    for (const held of this.#held.values()) {
      if (held.lease !== undefined && lost.has(held.lease)) held.lost = true;
    }
  }

  /** Runs a write under a lease after the outcomes queued before it; `undefined` if it failed. */
  #leaseOp<T>(write: () => Promise<T>): Promise<T | undefined> {
    const { promise, resolve } = Promise.withResolvers<T | undefined>();
    this.#ops.push({
      run: async () => {
        try {
          resolve(await write());
          this.#succeeded();
        } catch (error) {
          this.#failed("Could not write a lease", error);
          resolve(undefined);
        }
      },
    });
    this.#kick();
    return promise;
  }

  #kick(): void {
    this.#writing ??= this.#write().finally(() => {
      this.#writing = undefined;
      if (this.#pending.length > 0 || this.#ops.length > 0) this.#kick();
    });
  }

  /**
   * The writer: the one place this worker writes outcomes and lets lanes
   * go, one write at a time. Outcomes that came in while a write was on its
   * way go together in the next (a group commit).
   */
  async #write(): Promise<void> {
    let pause = RETRY_MIN;
    while (this.#pending.length > 0 || this.#ops.length > 0) {
      if (this.#pending.length > 0) {
        const batch = this.#pending.splice(0, RECORD_LIMIT);
        let lost: Lease[];
        try {
          lost = await this.#settings.engine.record(
            batch.map((entry) => entry.record),
            [],
            this.#settings.leaseMilliseconds,
          );
          this.#succeeded();
          pause = RETRY_MIN;
        } catch (error) {
          // Keep them, in order, and try again: a lease that expires meanwhile
          // and is taken over comes back as lost, and its updates run there.
          this.#pending.unshift(...batch);
          this.#failed("Could not record outcomes", error);
          await delay(pause);
          pause = Math.min(RETRY_MAX, pause * 2);
          continue;
        }
        this.#markLost(new Set(lost));
        for (const entry of batch) entry.settle();
      }
      // A lane queues a lease op only after its outcomes were written, and
      // this is the only writer of outcomes: the op cannot race one of its
      // lease. A few at a time, so that outcomes are not held up.
      for (const op of this.#ops.splice(0, OPS_PER_WRITE)) await op.run();
    }
  }

  #succeeded(): void {
    this.#stats.lastSuccessAt = clock().now();
  }

  #failed(what: string, error: unknown): void {
    this.#stats.failures++;
    this.#report(what, error);
  }

  #report(what: string, error: unknown): void {
    const token = this.#settings.token;
    safeReport(this.#settings.reporter, {
      source: "queue",
      message: `${what}: ${describe(error, token)}`,
      error: redactError(error, token),
    });
  }
}

/** The updates read from one lane whose link has not ended yet. */
class OpenCount {
  #open = 0;
  #bound = Infinity;
  #waiter: (() => void) | undefined;

  /** Counts `link` open until it settles. */
  add(link: Promise<unknown>): void {
    this.#open++;
    const end = () => {
      this.#open--;
      if (this.#open <= this.#bound) this.#waiter?.();
    };
    link.then(end, end);
  }

  /** Resolves once at most `count` are open. */
  atMost(count: number): Promise<void> {
    if (this.#open <= count) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#bound = count;
    this.#waiter = () => {
      this.#waiter = undefined;
      this.#bound = Infinity;
      resolve();
    };
    return promise;
  }
}
