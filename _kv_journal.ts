/**
 * The Deno KV journal behind `kvJournal()`: update entries, the highest id
 * stored, values split in parts, and corrupt entries moved aside.
 *
 * @module
 */

import { byId, checkIds, checkUpdates } from "./_journal_contract.ts";
import type { JournalState, UpdateJournal } from "./_journal_contract.ts";
import { defaultReporter, safeReport } from "./_report.ts";
import {
  applyMutation,
  checkedPrefix,
  checkedSetRoom,
  deleteMutation,
  formatKey,
  isUpdateWithId,
  joinParts,
  type Mutation,
  pack,
  partCount,
  removeMutations,
  storeMutations,
} from "./_kv_parts.ts";
import { isFunction, knownOptions, optionalObject, show } from "./_validate.ts";

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

/** What a scan of the update entries found, in id order. */
interface Found<Y> {
  updates: Y[];
  /** The number of parts of the updates stored in parts. */
  parts: Map<number, number>;
}

export class KvJournal<Y extends { update_id: number }> implements UpdateJournal<Y> {
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
    isFunction(subject, "reporter", reporter);
    this.#kv = kv;
    this.#prefix = checkedPrefix(subject, prefix);
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
