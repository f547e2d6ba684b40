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
import { defaultReporter, safeReport } from "./_report.ts";
import {
  applyMutation,
  checkedSetRoom,
  deleteMutation,
  formatKey,
  isKeyPart,
  isUpdateWithId,
  joinParts,
  type Mutation,
  pack,
  partCount,
  removeMutations,
  storeMutations,
} from "./_kv_parts.ts";
import { isFunction, knownOptions, optionalObject, show } from "./_validate.ts";

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

/**
 * A Telegram update as grammY types it: what a journal holds unless told
 * otherwise. (Tagged so that `deno doc --lint` accepts a type of another
 * package in a public signature.)
 *
 * @internal
 */
type TelegramUpdate = Update;

/** Something a journal dealt with itself and wants a human to know. */
export interface JournalReport {
  /** Where it happened. */
  source: "journal";
  /** One line, sentence case. */
  message: string;
  /** The original error, if any. */
  error?: unknown;
}

/** Options of `kvJournal`. */
export interface JournalOptions {
  /**
   * The key under which the journal keeps its entries: `[...prefix, "update",
   * id]` for each unfinished update, `[...prefix, "last"]` for the highest id
   * stored, `[...prefix, "corrupt", ...]` for entries it moved aside. Give each
   * bot that shares a database its own prefix.
   *
   * @default {["grammyx-runner"]}
   */
  prefix?: Deno.KvKey;
  /**
   * Receives what the journal dealt with itself: corrupt or foreign entries
   * it moved aside instead of running them. Replaces the default reporter,
   * which prints one line per report on stderr.
   */
  reporter?: (report: JournalReport) => void;
}

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

/** What a scan of the update entries found, in id order. */
interface Found<Y> {
  updates: Y[];
  /** The number of parts of the updates stored in parts. */
  parts: Map<number, number>;
}

class KvJournal<Y extends { update_id: number }> implements UpdateJournal<Y> {
  readonly #kv: Deno.Kv;
  readonly #prefix: Deno.KvKey;
  readonly #reporter: (report: JournalReport) => void;
  /** The highest id stored and the versionstamp of its entry, once read. */
  #last: { id: number | undefined; versionstamp: string | null } | undefined;
  /** The number of parts of each update this journal holds in parts. */
  readonly #parts = new Map<number, number>();

  constructor(kv: Deno.Kv, options: JournalOptions) {
    const subject = "Cannot create KV journal";
    if (
      typeof kv !== "object" || kv === null || typeof kv.atomic !== "function" ||
      typeof kv.get !== "function" || typeof kv.list !== "function"
    ) {
      throw new TypeError(`${subject} as 'kv' must be a Deno.Kv: current value is ${show(kv)}`);
    }
    optionalObject(subject, "options", options);
    knownOptions(subject, options, ["prefix", "reporter"]);
    const { prefix = ["grammyx-runner"], reporter = defaultReporter } = options;
    if (!Array.isArray(prefix) || !prefix.every(isKeyPart)) {
      throw new TypeError(
        `${subject} as 'prefix' must be an array of KV key parts: current value is ${show(prefix)}`,
      );
    }
    if (prefix.length === 0) {
      throw new RangeError(
        `${subject} as 'prefix' must hold at least one key part: current value is []`,
      );
    }
    isFunction(subject, "reporter", reporter);
    this.#kv = kv;
    this.#prefix = [...prefix];
    this.#reporter = reporter;
  }

  async open(): Promise<JournalState<Y>> {
    this.#last = await this.#readLast("Cannot open KV journal");
    const { updates, parts } = await this.#scan({ tidy: true });
    for (const [id, count] of parts) this.#parts.set(id, count);
    // Entries above `last` come from a store cut short by a crash: they were
    // never confirmed, so Telegram sends them again, and they must not run twice.
    const highest = updates.at(-1)?.update_id;
    const lastId = highest === undefined || (this.#last.id ?? -Infinity) >= highest
      ? this.#last.id
      : highest;
    return { unfinished: updates, lastId };
  }

  async store(updates: Y[]): Promise<void> {
    const subject = "Cannot store updates in KV journal";
    checkUpdates(subject, updates);
    if (updates.length === 0) return;
    const mutations: Mutation[] = [];
    const stored = new Map<number, number>();
    let highest = -Infinity;
    for (const update of updates) {
      const id = update.update_id;
      highest = Math.max(highest, id);
      const entry = storeMutations(this.#key("update", id), update);
      mutations.push(...entry.mutations);
      if (entry.parts > 0) stored.set(id, entry.parts);
    }
    // The last atomic operation also checks and sets `last`: it keeps room for that.
    const lastKey = this.#key("last");
    const chunks = pack(mutations, { reserve: checkedSetRoom(lastKey, 16) });
    for (const chunk of chunks.slice(0, -1)) await this.#commit(chunk);
    const final = chunks.at(-1)!;
    for (let attempt = 1;; attempt++) {
      const last = this.#last ?? await this.#readLast(subject);
      const id = Math.max(last.id ?? highest, highest);
      const operation = this.#kv.atomic().check({ key: lastKey, versionstamp: last.versionstamp });
      for (const mutation of final) applyMutation(operation, mutation);
      const result = await operation.set(lastKey, id).commit();
      if (result.ok) {
        this.#last = { id, versionstamp: result.versionstamp };
        break;
      }
      // Another journal on this prefix wrote `last` meanwhile: read it again.
      this.#last = undefined;
      if (attempt === 10) {
        throw new Error(
          `${subject} as ${
            formatKey(lastKey)
          } kept changing: is another bot writing to this prefix?`,
        );
      }
    }
    for (const [id, count] of stored) this.#parts.set(id, count);
  }

  async finish(updateIds: number[]): Promise<void> {
    checkIds("Cannot finish updates in KV journal", updateIds);
    const mutations = [...new Set(updateIds)].flatMap((id) =>
      removeMutations(this.#key("update", id), this.#parts.get(id) ?? 0)
    );
    for (const chunk of pack(mutations)) await this.#commit(chunk);
    for (const id of updateIds) this.#parts.delete(id);
  }

  async compact(): Promise<void> {
    await this.#scan({ tidy: false });
  }

  #key(...rest: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#prefix, ...rest];
  }

  async #readLast(
    subject: string,
  ): Promise<{ id: number | undefined; versionstamp: string | null }> {
    const key = this.#key("last");
    const entry = await this.#kv.get<unknown>(key);
    if (entry.value !== null && !Number.isSafeInteger(entry.value)) {
      throw new TypeError(
        `${subject} as the entry ${
          formatKey(key)
        } must be an integer, the highest update id stored (delete the entry if something else wrote it): current value is ${
          show(entry.value)
        }`,
      );
    }
    return { id: (entry.value as number | null) ?? undefined, versionstamp: entry.versionstamp };
  }

  /**
   * Lists the update entries in key order and returns the valid ones. Moves
   * corrupt entries aside; when `tidy`, also deletes parts whose entry is
   * gone (not while stores may run: a large update's parts come before it).
   */
  async #scan({ tidy }: { tidy: boolean }): Promise<Found<Y>> {
    const base = this.#key("update");
    const groups = new Map<
      number,
      { entry?: Deno.KvEntry<unknown>; parts: Deno.KvEntry<unknown>[] }
    >();
    for await (const entry of this.#kv.list({ prefix: base })) {
      const [id, index, ...more] = entry.key.slice(base.length);
      if (!Number.isSafeInteger(id) || more.length > 0) {
        await this.#moveAside(entry, "its key does not end with an update id");
        continue;
      }
      const group = groups.get(id as number) ?? { parts: [] };
      groups.set(id as number, group);
      if (index === undefined) group.entry = entry;
      else group.parts.push(entry);
    }
    const found: Found<Y> = { updates: [], parts: new Map() };
    for (const [id, { entry, parts }] of groups) {
      const count = partCount(entry?.value);
      if (count === undefined && parts.length > 0 && tidy) {
        // Parts whose entry is gone or no longer names them: a cut-short store or finish.
        await this.#commit(parts.map((part) => deleteMutation(part.key)));
      }
      if (entry === undefined) continue;
      if (count === undefined) {
        if (isUpdateWithId(entry.value, id)) {
          found.updates.push(entry.value as unknown as Y);
        } else {
          await this.#moveAside(entry, `its value is not an update with update_id ${id}`);
        }
        continue;
      }
      const update = joinParts(parts, count);
      if (isUpdateWithId(update, id)) {
        found.updates.push(update as unknown as Y);
        found.parts.set(id, parts.length);
      } else {
        const reason = `it names ${
          show(count)
        } parts that do not make an update with update_id ${id}`;
        await this.#moveAside(entry, reason);
        for (const part of parts) {
          await this.#moveAside(part, `it is a part of ${formatKey(entry.key)}`);
        }
      }
    }
    found.updates.sort(byId);
    return found;
  }

  async #moveAside(entry: Deno.KvEntry<unknown>, reason: string): Promise<void> {
    const rest = entry.key.slice(this.#prefix.length + 1);
    const aside = this.#key("corrupt", ...rest);
    try {
      const result = await this.#kv.atomic()
        .check(entry)
        .set(aside, entry.value)
        .delete(entry.key)
        .commit();
      // A failed check means the entry changed meanwhile: leave it to the next scan.
      if (!result.ok) return;
      this.#report(
        `Moved the journal entry ${formatKey(entry.key)} aside to ${
          formatKey(aside)
        } without running it, as ${reason}`,
      );
    } catch (error) {
      this.#report(
        `Skipped the journal entry ${
          formatKey(entry.key)
        }, as ${reason}, but could not move it aside: ${
          error instanceof Error ? error.message : String(error)
        }`,
        error,
      );
    }
  }

  async #commit(mutations: Mutation[]): Promise<void> {
    const operation = this.#kv.atomic();
    for (const mutation of mutations) applyMutation(operation, mutation);
    await operation.commit();
  }

  #report(message: string, error?: unknown): void {
    const report: JournalReport = error === undefined
      ? { source: "journal", message }
      : { source: "journal", message, error };
    safeReport(this.#reporter, report);
  }
}

function checkUpdates(subject: string, updates: unknown): void {
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

function checkIds(subject: string, ids: unknown): void {
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

function byId(a: { update_id: number }, b: { update_id: number }): number {
  return a.update_id - b.update_id;
}
