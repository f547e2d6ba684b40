// The books of a sink: the updates taken and not finished, in the order they
// were taken, how many are in each state, and from that the backpressure: how
// many more updates fit, and the promises that wait for room, for every
// update to settle, or for the sink to be idle. Not exported by mod.ts.

import type { Permits } from "./_permits.ts";
import type { Outcome, SinkStats } from "./_sink_contract.ts";

/** Where an update is: the words of `SinkStats`, an outcome once it has one. */
export type TaskState = "waitingForSlot" | "running" | "waitingForKey" | Outcome;

/** What the books need of an update in the sink. */
export interface Entry<Y> {
  state: TaskState;
  readonly update: Y;
  /** `clock().now()` when the sink took it. */
  readonly takenAt: number;
}

/** How many updates a batch holds at most (getUpdates' limit). */
export const BATCH = 100;

/** The updates a sink holds, counted by state, and how many more it takes. */
export class Backlog<Y> {
  readonly #permits: Permits;
  /** Updates that may wait for a permit, so permits never idle while a fetch is on its way. */
  readonly #ahead: number;
  /** While every permit is held, ask for more only when this many fit (whole batches). */
  readonly #topUp: number;
  readonly #maxPending: number;
  /**
   * Updates taken whose middleware has not ended, in the order they were
   * taken (a `Set` keeps insertion order): the unfinished ones, and those
   * that timed out and still run.
   */
  readonly #open = new Set<Entry<Y>>();
  /** Of `#open`, those that timed out. */
  #overtime = 0;
  /** Updates per state; one that timed out counts there even while its task still runs. */
  readonly #count: Record<TaskState, number> = {
    waitingForSlot: 0,
    running: 0,
    waitingForKey: 0,
    handled: 0,
    failed: 0,
    timedOut: 0,
  };
  /** Tasks whose consumer has not ended (timed-out ones included). */
  #consuming = 0;
  #capacityWaiters: ((capacity: number) => void)[] = [];
  #finishedWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];

  /**
   * @param permits The permits of the sink
   * @param ahead How many updates may wait for a permit (the read-ahead)
   * @param maxPending How many updates may be taken and not finished
   */
  constructor(permits: Permits, ahead: number, maxPending: number) {
    this.#permits = permits;
    this.#ahead = ahead;
    this.#topUp = Math.max(1, Math.min(BATCH, Math.floor(ahead / 2)));
    this.#maxPending = maxPending;
  }

  /** Books an update just taken, in its first state. */
  take(entry: Entry<Y>): void {
    this.#open.add(entry);
    this.#count[entry.state]++;
  }

  /** Books a change of state; an outcome takes the update out of the unfinished ones. */
  move(entry: Entry<Y>, state: TaskState): void {
    this.#count[entry.state]--;
    this.#count[state]++;
    entry.state = state;
    if (state === "handled" || state === "failed") this.#open.delete(entry);
    // A timed-out update's task runs on: it stays open until it ends.
    else if (state === "timedOut") this.#overtime++;
  }

  /** Books a consumer that started. */
  consumerStarted(): void {
    this.#consuming++;
  }

  /** Books the consumer of `entry` that ended, on time or not. */
  consumerEnded(entry: Entry<Y>): void {
    this.#consuming--;
    if (entry.state === "timedOut" && this.#open.delete(entry)) this.#overtime--;
  }

  /** Updates taken and not finished (those that timed out are finished). */
  size(): number {
    return this.#open.size - this.#overtime;
  }

  snapshot(): Y[] {
    return this.#unfinished().map((entry) => entry.update);
  }

  /** The updates of `snapshot()` and the timed-out ones whose task still runs, in taking order. */
  unended(): Y[] {
    return Array.from(this.#open, (entry) => entry.update);
  }

  #unfinished(): Entry<Y>[] {
    const open = Array.from(this.#open);
    return this.#overtime === 0 ? open : open.filter((entry) => entry.state !== "timedOut");
  }

  stats(): SinkStats {
    let oldest: Entry<Y> | undefined;
    for (const entry of this.#open) {
      if (entry.state === "timedOut") continue;
      oldest = entry;
      break;
    }
    const { handled, failed, timedOut, running, waitingForKey, waitingForSlot } = this.#count;
    return {
      handled,
      failed,
      timedOut,
      running,
      waitingForKey,
      waitingForSlot,
      pending: this.size(),
      oldestPendingSince: oldest?.takenAt,
    };
  }

  /** Resolves with the free capacity once there is room for more (see `#hasRoom`). */
  capacity(): Promise<number> {
    if (this.#hasRoom()) return Promise.resolve(this.#capacity());
    return new Promise((resolve) => this.#capacityWaiters.push(resolve));
  }

  /** Resolves once every update taken has an outcome. */
  finished(): Promise<void> {
    if (this.size() === 0) return Promise.resolve();
    return new Promise((resolve) => this.#finishedWaiters.push(resolve));
  }

  /** Resolves once every update taken has an outcome and no consumer runs any more. */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Resolves whoever waits for capacity, for all updates to settle, or for idleness. */
  wake(): void {
    if (this.#capacityWaiters.length > 0 && this.#hasRoom()) {
      const capacity = this.#capacity();
      const waiters = this.#capacityWaiters;
      this.#capacityWaiters = [];
      for (const resolve of waiters) resolve(capacity);
    }
    if (this.size() === 0 && this.#finishedWaiters.length > 0) {
      const waiters = this.#finishedWaiters;
      this.#finishedWaiters = [];
      for (const resolve of waiters) resolve();
    }
    if (this.#isIdle() && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /**
   * How many more updates the sink takes: free permits plus a small
   * read-ahead (at most two batches waiting for a permit), within `maxPending`.
   */
  #capacity(): number {
    return Math.min(
      this.#permits.free + this.#ahead - this.#count.waitingForSlot,
      this.#maxPending - this.size(),
    );
  }

  /** Idle permits take what fits; held ones wait until a whole batch fits the read-ahead. */
  #hasRoom(): boolean {
    const capacity = this.#capacity();
    return capacity > 0 && (this.#permits.free > 0 || capacity >= this.#topUp);
  }

  #isIdle(): boolean {
    return this.#consuming === 0 && this.#open.size === 0;
  }
}
