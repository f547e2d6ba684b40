// The contract of a journal: what the fetcher calls, what `memoryJournal()`
// and `kvJournal()` implement, and the checks of the arguments and the id
// order they share. journal.ts re-exports the types, and its documentation
// shows them. Not exported by mod.ts.

import { show } from "./_validate.ts";

/**
 * What a journal kept from the previous run.
 *
 * @typeParam Y The type of the updates the journal holds (grammY's `Update` for `run()`)
 */
export interface JournalState<Y> {
  /** Updates stored and not finished, in `update_id` order: they run first. */
  unfinished: Y[];
  /** The highest update id ever stored (even if finished and removed), if any. */
  lastId: number | undefined;
}

/**
 * A durable inbox: fetched updates are stored before the getUpdates call
 * that confirms them is sent, and removed once finished, so a crash loses
 * nothing. `memoryJournal` and `kvJournal` implement it; any storage can.
 * The runner calls one method at a time per kind of call, and retries a
 * failed `store` (a batch is taken only once it is stored) and `finish`.
 *
 * @typeParam Y The type of the updates it holds: objects with a numeric `update_id` (grammY's `Update` for `run()`)
 */
export interface UpdateJournal<Y> {
  /** Loads what the previous run left. Called once, before the first fetch. */
  open(): Promise<JournalState<Y>>;
  /** Stores a batch durably; it is confirmed to Telegram only after this resolves. */
  store(updates: Y[]): Promise<void>;
  /** Records that these updates finished (handled, failed or timed out). */
  finish(updateIds: number[]): Promise<void>;
  /** Drops what is no longer needed. Called at the end of every `stop()`. */
  compact(): Promise<void>;
}

export function checkUpdates(subject: string, updates: unknown): void {
  if (!Array.isArray(updates)) {
    throw new TypeError(
      `${subject} as 'updates' must be an array: current value is ${show(updates)}`,
    );
  }
  updates.forEach((update, index) => {
    const id = (update as { update_id?: unknown } | null | undefined)?.update_id;
    if (!Number.isSafeInteger(id)) {
      throw new TypeError(
        `${subject} as 'updates[${index}].update_id' must be an integer: current value is ${
          show(id)
        }`,
      );
    }
  });
}

export function checkIds(subject: string, ids: unknown): void {
  if (!Array.isArray(ids)) {
    throw new TypeError(
      `${subject} as 'updateIds' must be an array: current value is ${show(ids)}`,
    );
  }
  ids.forEach((id, index) => {
    if (!Number.isSafeInteger(id)) {
      throw new TypeError(
        `${subject} as 'updateIds[${index}]' must be an integer: current value is ${show(id)}`,
      );
    }
  });
}

export function byId(a: { update_id: number }, b: { update_id: number }): number {
  return a.update_id - b.update_id;
}
