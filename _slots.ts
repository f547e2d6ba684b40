// The handshake between the sink and `sequentialize()`.
//
// The sink registers the update object it passes to its consumer. grammY
// builds each context around that very object, so `sequentialize()` finds
// the slot through `ctx.update`, hands the slot back while the update waits
// for its keys, and takes one again, ahead of new updates, when its turn
// comes. An update that no sink registered (a plain `bot.handleUpdate`, a
// worker thread) simply waits, as it would with any other runner.

/** What an update that waits for its keys may do with its slot. */
export interface Slot {
  /** Gives the slot back while the update waits. No-op if not holding one. */
  release(): void;
  /** Takes a slot again, ahead of updates that have not started yet. */
  acquire(): Promise<void>;
  /**
   * Hands a resource (a worker pool) to the sink running the update; the
   * runner closes it at the end of `stop()`, after the sink drained.
   */
  adopt(resource: Closable): void;
  /** Tells the sink the update's keys (its span shows them, hashed by default). */
  keyed(keys: readonly string[]): void;
}

/** Something the runner closes when it stops. */
export interface Closable {
  /** Releases the resource (terminates threads, closes handles). */
  close(): Promise<void> | void;
}

const slots = new WeakMap<object, Slot>();

/** Makes `slot` findable through the update object the consumer receives. */
export function registerSlot(update: unknown, slot: Slot): void {
  if (typeof update === "object" && update !== null) slots.set(update, slot);
}

/** Forgets the slot of `update`. */
export function unregisterSlot(update: unknown): void {
  if (typeof update === "object" && update !== null) slots.delete(update);
}

/** The slot of the context's update, if a sink of this module runs it. */
export function slotOf(ctx: unknown): Slot | undefined {
  if (typeof ctx !== "object" || ctx === null) return undefined;
  const update = (ctx as { update?: unknown }).update;
  if (typeof update !== "object" || update === null) return undefined;
  return slots.get(update);
}
