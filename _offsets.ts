// The offset bookkeeping behind getUpdates: which update ids were taken, which
// are still unfinished, and so which offset confirms only what is safe to
// forget. Pure: no timers, no I/O, so "never lose an update" is tested with
// tables (tests/offsets_test.ts).
//
// Telegram forgets every update below the offset of a getUpdates call and
// sends the rest again, so:
// - an id at or below the highest one taken is a re-delivery (the "handled"
//   mode holds the offset at the oldest unfinished update) or a duplicate: it
//   is skipped;
// - an id below the offset that was sent can only come from a new sequence
//   (after a week without updates Telegram picks the next id at random): the
//   bookkeeping starts again from it.

/** What `take()` made of one getUpdates answer. */
export interface TakeResult<Y> {
  /** The updates not taken before, in `update_id` order: run these. */
  fresh: Y[];
  /** Updates skipped because they were taken already (re-sent, or twice in the answer). */
  skipped: number;
  /** Set when the ids went backwards: the lowest id of the new sequence. */
  restartedAt: number | undefined;
}

/** Ids taken, unfinished and confirmed; memory grows with the updates in flight only. */
export class UpdateOffsets {
  /** The highest id taken in the current sequence, -1 before the first. */
  #lastTaken = -1;
  /** Everything below this was confirmed to Telegram (the offset of the last good poll). */
  #confirmed = 0;
  /** The highest offset sent: Telegram may have forgotten everything below it. */
  #sent = 0;
  /** Unfinished ids of the current sequence, in increasing order (a Set keeps insertion order). */
  #unfinished = new Set<number>();
  /** Unfinished ids of a sequence Telegram has abandoned: it will not send them again. */
  readonly #abandoned = new Set<number>();

  /** The highest id taken, -1 before the first. */
  get lastTaken(): number {
    return this.#lastTaken;
  }

  /** The offset of the last getUpdates that succeeded: all below it is confirmed. */
  get confirmed(): number {
    return this.#confirmed;
  }

  /** How many updates are taken and not finished. */
  get unfinished(): number {
    return this.#unfinished.size + this.#abandoned.size;
  }

  /** The lowest id taken and not finished, or the id after the last taken if all are done. */
  watermark(): number {
    for (const id of this.#unfinished) return id;
    return this.#lastTaken + 1;
  }

  /** An upper bound of the ids from the watermark on that were taken already. */
  takenAboveWatermark(): number {
    return this.#lastTaken + 1 - this.watermark();
  }

  /** Records that a getUpdates with `offset` is on its way (Telegram forgets on receipt). */
  send(offset: number): void {
    this.#sent = Math.max(this.#sent, offset);
  }

  /** Records that a getUpdates with `offset` succeeded. */
  confirm(offset: number): void {
    this.send(offset);
    this.#confirmed = Math.max(this.#confirmed, offset);
  }

  /**
   * Whether Telegram surely sends `id` again if it is not finished: no
   * offset above it was sent in its sequence (one that failed may still
   * have arrived).
   */
  isUnconfirmed(id: number): boolean {
    return !this.#abandoned.has(id) && id >= this.#sent;
  }

  /**
   * Picks the new updates of a getUpdates answer sent with `offset`: skips
   * what was taken before and ids that appear twice, and notes a new
   * sequence when the ids went backwards. `updates` must be sorted by id.
   * Nothing is taken until `take()` gets the result.
   */
  select<Y extends { update_id: number }>(updates: Y[], offset: number): TakeResult<Y> {
    const lowest = updates[0]?.update_id;
    const restartedAt = lowest !== undefined && lowest < offset ? lowest : undefined;
    let last = restartedAt === undefined ? this.#lastTaken : restartedAt - 1;
    const fresh: Y[] = [];
    for (const update of updates) {
      const id = update.update_id;
      if (id <= last || this.#abandoned.has(id)) continue;
      last = id;
      fresh.push(update);
    }
    return { fresh, skipped: updates.length - fresh.length, restartedAt };
  }

  /** Takes what `select()` picked (they are now unfinished until `finish()`). */
  take<Y extends { update_id: number }>(selected: TakeResult<Y>): void {
    if (selected.restartedAt !== undefined) this.#restart(selected.restartedAt);
    for (const update of selected.fresh) this.#add(update.update_id);
  }

  /**
   * Takes updates a journal kept from a previous run (any order; ids at or
   * below the last taken are dropped), then counts every id up to `lastId`
   * as taken. Returns what to run, in id order.
   */
  resume<Y extends { update_id: number }>(updates: Y[], lastId: number | undefined): Y[] {
    const replay: Y[] = [];
    for (const update of updates.toSorted((a, b) => a.update_id - b.update_id)) {
      if (update.update_id <= this.#lastTaken) continue;
      this.#add(update.update_id);
      replay.push(update);
    }
    if (lastId !== undefined && lastId > this.#lastTaken) this.#lastTaken = lastId;
    return replay;
  }

  /** Marks an update finished; returns whether the watermark moved. */
  finish(id: number): boolean {
    if (this.#abandoned.delete(id)) return false;
    const first = this.#unfinished.values().next();
    if (!this.#unfinished.delete(id)) return false;
    return !first.done && first.value === id;
  }

  #add(id: number): void {
    this.#lastTaken = id;
    this.#unfinished.add(id);
  }

  /** A new sequence starts at `id`: what is unfinished of the old one can no longer be confirmed. */
  #restart(id: number): void {
    for (const old of this.#unfinished) this.#abandoned.add(old);
    this.#unfinished = new Set();
    this.#lastTaken = id - 1;
    this.#confirmed = this.#sent = id;
  }
}
