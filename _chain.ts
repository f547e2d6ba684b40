// Keyed chains: the ordering that `sequentialize()` and `BotWorker` share.
//
// Each key has a chain of items that run one after another, in the order
// they joined it; the map holds only the tail of each chain (the promise of
// its last item) and forgets a key as soon as its chain is empty, so memory
// grows with the items in flight, not with the keys ever seen. An item may
// hold several keys: it runs once every one of them is free. Not exported by
// mod.ts.

/** Chains of items per key; items of different keys run at once. */
export class KeyedChains {
  /** The promise of the last item of each busy key; it never rejects. */
  readonly #tails = new Map<string, Promise<void>>();

  /** How many keys have items running or waiting. */
  get size(): number {
    return this.#tails.size;
  }

  /**
   * Runs `task` once the items that joined the chains of `keys` before it
   * are done, and settles as it does. A failing item does not hold up the
   * ones after it. With no busy key (or no key), `task` starts before this
   * returns, so the caller's order is kept without a tick in between.
   *
   * @param keys The keys of the item (duplicates count once)
   * @param task The work of the item
   * @param wait How to wait for the earlier items when a key is busy (by
   *   default, just await them); `sequentialize()` gives its concurrency slot
   *   back meanwhile
   * @returns What `task` returns
   */
  async run<T>(
    keys: readonly string[],
    task: () => T | Promise<T>,
    wait: (earlier: Promise<unknown>) => Promise<unknown> = (earlier) => earlier,
  ): Promise<T> {
    const earlier: Promise<void>[] = [];
    const { promise: done, resolve } = Promise.withResolvers<void>();
    for (const key of keys) {
      const tail = this.#tails.get(key);
      if (tail === done) continue; // a duplicate key
      if (tail !== undefined) earlier.push(tail);
      this.#tails.set(key, done);
    }
    try {
      if (earlier.length > 0) await wait(earlier.length === 1 ? earlier[0]! : Promise.all(earlier));
      return await task();
    } finally {
      resolve();
      for (const key of keys) {
        if (this.#tails.get(key) === done) this.#tails.delete(key);
      }
    }
  }
}
