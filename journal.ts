/**
 * Durable inboxes for `run()`. A journal stores every fetched batch before the
 * getUpdates call that confirms it to Telegram is sent, and forgets each update
 * once it finished. After a crash (kill -9, an out-of-memory kill, a redeploy)
 * the next start runs what was left first, in order, and drops Telegram's
 * re-deliveries of what had already finished. `kvJournal` keeps the journal in
 * Deno KV (Deno Deploy included); `memoryJournal` keeps it in memory, for tests.
 *
 * The guarantee is at-least-once: no update taken from Telegram is lost, and
 * after a crash only the updates whose handler had run but whose finish was
 * not recorded yet (the runner records finishes every 10 ms or 100 updates)
 * run a second time.
 *
 * ```ts ignore
 * import { Bot } from "grammy";
 * import { run } from "@grammyx/runner";
 * import { kvJournal } from "@grammyx/runner/journal";
 *
 * const bot = new Bot(Deno.env.get("BOT_TOKEN")!);
 * const kv = await Deno.openKv();
 * run(bot, { runner: { journal: kvJournal(kv) } });
 * ```
 *
 * @module
 */

import type { Update } from "./_deps.ts";
import { byId, checkIds, checkUpdates } from "./_journal_contract.ts";
import type { JournalState, UpdateJournal } from "./_journal_contract.ts";
import { type JournalOptions, type JournalReport, KvJournal } from "./_kv_journal.ts";

export type { JournalOptions, JournalReport, JournalState, UpdateJournal };

/**
 * A Telegram update, as grammY's `Update` type (`grammy/types`) describes it:
 * what a journal holds unless you give it another type.
 *
 * @internal
 */
type TelegramUpdate = Update;

/**
 * Creates a journal that lives in memory: it survives `stop()` and a new
 * `run()` in the same process, not a crash. For tests; `size` tells how many
 * updates it holds that have not finished.
 *
 * @typeParam Y The type of the updates it holds: objects with a numeric `update_id`; grammY's `Update` by default
 * @returns An empty journal
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryJournal } from "@grammyx/runner/journal";
 *
 * const journal = memoryJournal();
 * await journal.store([{ update_id: 8 }, { update_id: 7 }]);
 * await journal.finish([8]);
 * const { unfinished, lastId } = await journal.open();
 * assert.deepEqual(unfinished.map((update) => update.update_id), [7]);
 * assert.equal(lastId, 8);
 * assert.equal(journal.size, 1);
 * ```
 */
export function memoryJournal<Y extends { update_id: number } = TelegramUpdate>():
  & UpdateJournal<Y>
  & { readonly size: number } {
  const entries = new Map<number, Y>();
  let lastId: number | undefined;
  return {
    get size() {
      return entries.size;
    },
    async open() {
      const unfinished = [...entries.values()].sort(byId).map((update) => structuredClone(update));
      return { unfinished, lastId };
    },
    async store(updates) {
      checkUpdates("Cannot store updates in memory journal", updates);
      for (const update of updates) {
        entries.set(update.update_id, structuredClone(update));
        lastId = Math.max(lastId ?? update.update_id, update.update_id);
      }
    },
    async finish(updateIds) {
      checkIds("Cannot finish updates in memory journal", updateIds);
      for (const id of updateIds) entries.delete(id);
    },
    async compact() {},
  };
}

/**
 * Creates a journal in Deno KV. `store` writes a batch and the highest id in
 * one atomic operation (several when a batch exceeds what one may hold, the
 * highest id in the last), so the journal never claims an update it does not
 * hold. An update too large for one KV value is stored in parts. An entry that
 * is not an update of this journal is moved aside to `[...prefix, "corrupt",
 * ...]` and reported, not run, so it cannot make the bot fail at every start;
 * `open()` and `compact()` do that. Updates must be JSON data, as Telegram's are.
 *
 * @typeParam Y The type of the updates it holds: JSON objects with a numeric `update_id`; grammY's `Update` by default
 * @param kv The database, from `Deno.openKv()`; you open and close it
 * @param options The key prefix and the reporter
 * @returns A journal for `run(bot, { runner: { journal } })`
 * @throws {TypeError | RangeError} if an argument is invalid, or an option name is unknown (a typo)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kvJournal } from "@grammyx/runner/journal";
 *
 * const kv = await Deno.openKv(":memory:");
 * const journal = kvJournal(kv, { prefix: ["my-bot"] });
 * await journal.store([{ update_id: 1 }, { update_id: 2 }]);
 * await journal.finish([1]);
 *
 * // After a crash, a new process opens the same database:
 * const { unfinished, lastId } = await kvJournal(kv, { prefix: ["my-bot"] }).open();
 * assert.deepEqual(unfinished.map((update) => update.update_id), [2]);
 * assert.equal(lastId, 2);
 * assert.equal((await kv.get(["my-bot", "last"])).value, 2);
 * kv.close();
 * ```
 */
export function kvJournal<Y extends { update_id: number } = TelegramUpdate>(
  kv: Deno.Kv,
  options: JournalOptions = {},
): UpdateJournal<Y> {
  return new KvJournal<Y>(kv, options);
}
