/**
 * The getUpdates supplier: offset tracking, retries with capped backoff, the
 * policy for 401/409/429, and the confirmation of handled updates. `run()`
 * builds one from your bot; use it directly to compose a runner by hand.
 *
 * ```ts
 * import { Bot } from "grammy";
 * import { createUpdateSupplier } from "@grammyx/runner/fetcher";
 *
 * const bot = new Bot("123:placeholder-token");
 * const supplier = createUpdateSupplier(bot, { fetch: { timeout: 30 } });
 * ```
 *
 * @module
 */

import { delay } from "./_async.ts";
import { Calls } from "./_calls.ts";
import { MAX_DELAY } from "./_clock.ts";
import { JournalWriter } from "./_journal_writer.ts";
import { UpdateOffsets } from "./_offsets.ts";
import type { RetrySettings } from "./_retry.ts";
import { defaultReporter, type Report, type Reporter, safeReport } from "./_report.ts";
import { redactError } from "./_redact.ts";
import { type Telemetry, telemetryOf, type TelemetryOptions } from "./_telemetry.ts";
import { isFunction, knownOptions, numberInRange, oneOf, optionalObject } from "./_validate.ts";
import type { UpdateJournal } from "./journal.ts";
import type { SupplierStats, UpdateSupplier } from "./source.ts";

/**
 * The members of a grammY `Bot` that the runner uses. Any grammY 1.x bot
 * (npm or deno.land) fits.
 */
export interface BotAdapter<Y, R> {
  /**
   * Fetches the bot's info once before the first update (grammY's
   * `bot.init`). The runner passes a standard `AbortSignal` (typed `never`
   * for the same reason as in `getUpdates`).
   */
  init?: (signal?: never) => Promise<void>;
  /** Runs the middleware on one update. */
  handleUpdate: (update: Y) => Promise<void>;
  /** Gets middleware errors (what `bot.catch` sets). */
  errorHandler: (error: R) => unknown;
  /** The Bot API client. */
  api: {
    /**
     * The Bot API's getUpdates. The runner passes a standard `AbortSignal`;
     * the parameter is typed `never` so that grammY's npm build, which
     * declares a shim type for it, fits as well as the deno.land one.
     */
    getUpdates: (
      args: { offset: number; limit: number; timeout: number },
      signal: never,
    ) => Promise<Y[]>;
  };
  /** The bot token, used only to keep it out of reports and errors. */
  readonly token?: string;
}

/** Options passed on to every getUpdates call. */
export interface FetchOptions {
  /**
   * Long polling timeout in seconds.
   *
   * @default {30}
   */
  timeout?: number;
  /**
   * The update types to receive, e.g. `["message", "callback_query"]`; `[]`
   * means all but `chat_member`. If not given, Telegram keeps the previous
   * setting.
   */
  allowed_updates?: ReadonlyArray<string>;
}

/** When an update counts as confirmed to Telegram. */
export type ConfirmMode = "fetched" | "handled";

/**
 * How the runner fetches updates. (The name is kept from `@grammyjs/runner`.)
 */
export interface RunnerOptions<Y = { update_id: number }> {
  /** Options passed on to getUpdates. */
  fetch?: FetchOptions;
  /**
   * How long to keep retrying a failing getUpdates, in milliseconds, counted
   * from the first failure in a row; then the run ends with a `PollingError`.
   *
   * @default {54_000_000} (15 hours)
   */
  maxRetryTime?: number;
  /**
   * The pause before a retry: `"exponential"` (100 ms, doubling),
   * `"quadratic"` (100 ms, growing by 100 ms), or a fixed number of ms (at
   * most 2^31 − 1, what a timer can count). Growing pauses are capped at
   * 30 s and jittered (50–100 %).
   *
   * @default {"exponential"}
   */
  retryInterval?: "exponential" | "quadratic" | number;
  /**
   * How long getUpdates may keep answering 409 Conflict (another instance
   * polls with this token, e.g. during a rolling deploy) before the run ends
   * with a `PollingError`, in milliseconds. The clock runs from the first
   * 409 for as long as the next comes within this time of the last, even if
   * polls succeed in between (two pollers take turns).
   *
   * @default {30_000}
   */
  maxConflictTime?: number;
  /**
   * How long a Bot API call may stay silent past the time it may take (for
   * getUpdates: the long poll's `fetch.timeout`; for getMe and the
   * confirming call at `stop()`: none) before it is aborted and retried like
   * a network failure, in milliseconds. A connection that went silent (a
   * network black hole) costs at most this, not grammY's 500 s client
   * timeout.
   *
   * @default {10_000}
   */
  stallGrace?: number;
  /**
   * `"fetched"`: the next getUpdates confirms a batch as soon as it was
   * taken (fastest; a crash loses what was in flight, a `stop()` does not).
   * `"handled"`: the offset never passes the oldest unfinished update (a
   * crash loses nothing; after a restart, what was in flight runs again).
   *
   * @default {"fetched"}
   */
  confirm?: ConfirmMode;
  /**
   * A durable inbox (see `journal.ts`): updates are stored before they are
   * confirmed, unfinished ones run first after a restart, and updates
   * recorded as finished are not run again. A crash loses nothing; the
   * concurrency stays as it is.
   *
   * @default {undefined} (no journal)
   */
  journal?: UpdateJournal<Y>;
  /**
   * Suppresses the default reporter's lines about failed getUpdates calls.
   *
   * @default {false}
   */
  silent?: boolean;
  /**
   * Receives every failure the runner deals with itself (failed getUpdates
   * calls, error handlers that threw). Replaces the default reporter, which
   * prints one line per report on stderr.
   */
  reporter?: Reporter;
  /**
   * Where the OpenTelemetry metrics and spans of the Bot API calls go (see
   * `TelemetryOptions`). Without it, the providers registered with
   * `@opentelemetry/api` when the fetcher is created; with none, nothing is
   * recorded.
   *
   * @default {{}}
   */
  telemetry?: TelemetryOptions;
}

/** An update supplier over getUpdates that learns which updates are done. */
export interface BotUpdateSupplier<Y> extends Required<UpdateSupplier<Y>> {
  /** Marks an update as finished (handled, failed or timed out). */
  done: (updateId: number) => void;
  /** The offset the next getUpdates sends. */
  offset: () => number;
}

/**
 * Creates the getUpdates supplier `run()` uses. Tell it which updates are
 * done (`done(update_id)`, which `run()` wires to the sink), so `confirm()`
 * and the `"handled"` mode never confirm an unfinished update.
 *
 * @param bot A grammY bot (or anything with `api.getUpdates`)
 * @param options How to fetch and retry
 * @returns A supplier for `createSource`
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createUpdateSupplier } from "@grammyx/runner";
 *
 * const offsets: number[] = [];
 * const bot = {
 *   handleUpdate: async () => {},
 *   errorHandler: () => {},
 *   api: {
 *     getUpdates: async (args: { offset: number }) => {
 *       offsets.push(args.offset);
 *       return [{ update_id: 7 }];
 *     },
 *   },
 * };
 * const supplier = createUpdateSupplier(bot, { confirm: "handled" });
 * const signal = new AbortController().signal;
 * await supplier.supply(100, signal);
 * supplier.done(7);
 * assert.equal(supplier.offset(), 8);
 * ```
 */
export function createUpdateSupplier<Y extends { update_id: number }, R>(
  bot: BotAdapter<Y, R>,
  options: RunnerOptions<Y> = {},
): BotUpdateSupplier<Y> {
  const fetcher = new UpdateFetcher(bot, options, { tracking: true });
  return {
    supply: (batchSize, signal) => fetcher.fetch(batchSize, signal),
    confirm: (signal) => fetcher.confirm(signal),
    willResend: (update) => fetcher.willResend(update),
    stats: () => fetcher.stats(),
    done: (updateId) => fetcher.done(updateId),
    offset: () => fetcher.nextOffset(),
  };
}

/**
 * Creates a function that fetches the next batch with getUpdates, retrying
 * as configured; every call moves the offset past the batch it returned.
 * Kept for `@grammyjs/runner` compatibility: `createUpdateSupplier` also
 * confirms handled updates at the end.
 *
 * @param bot A grammY bot (or anything with `api.getUpdates`)
 * @param options How to fetch and retry (`confirm` must be `"fetched"`)
 * @returns `(batchSize, signal) => Promise<updates>`
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createUpdateFetcher } from "@grammyx/runner";
 *
 * let id = 0;
 * const bot = {
 *   handleUpdate: async () => {},
 *   errorHandler: () => {},
 *   api: { getUpdates: async () => [{ update_id: ++id }] },
 * };
 * const fetch = createUpdateFetcher(bot);
 * const signal = new AbortController().signal;
 * assert.deepEqual(await fetch(10, signal), [{ update_id: 1 }]);
 * ```
 */
export function createUpdateFetcher<Y extends { update_id: number }, R>(
  bot: BotAdapter<Y, R>,
  options: RunnerOptions<Y> = {},
): (batchSize: number, signal: AbortSignal) => Promise<Y[]> {
  if (options.confirm === "handled") {
    throw new TypeError(
      `Cannot create update fetcher as 'confirm' must be "fetched" here (use createUpdateSupplier or run for "handled"): current value is "handled"`,
    );
  }
  if (options.journal !== undefined) {
    throw new TypeError(
      `Cannot create update fetcher as 'journal' needs to know which updates are done (use createUpdateSupplier or run): current value is a journal`,
    );
  }
  const fetcher = new UpdateFetcher(bot, options, { tracking: false });
  return (batchSize, signal) => fetcher.fetch(batchSize, signal);
}

/** A getUpdates answer that is not a list of updates. */
class MalformedAnswer extends Error {
  override name = "MalformedAnswer";
}

/** The members of a bot that fetching uses. */
type PollingBot<Y> = Pick<BotAdapter<Y, never>, "init" | "api" | "token">;

/** How often the confirming getUpdates at stop() is tried. */
const CONFIRM_ATTEMPTS = 3;

class UpdateFetcher<Y extends { update_id: number }> {
  readonly #bot: PollingBot<Y>;
  readonly #settings: FetcherSettings<Y>;
  readonly #tracking: boolean;
  readonly #offsets = new UpdateOffsets();
  readonly #calls: Calls;
  readonly #writer: JournalWriter<Y> | undefined;
  /** Updates the journal kept from the previous run, still to be handed out. */
  #replay: Y[] | undefined;
  #initialized = false;
  /** Resolved when the watermark moves; made only while the fetcher waits for that. */
  #advanced: PromiseWithResolvers<void> | undefined;

  constructor(bot: PollingBot<Y>, options: RunnerOptions<Y>, { tracking }: { tracking: boolean }) {
    const subject = "Cannot create update fetcher";
    if (typeof bot !== "object" || bot === null || typeof bot.api?.getUpdates !== "function") {
      throw new TypeError(`${subject} as 'bot' must have api.getUpdates`);
    }
    this.#settings = settingsOf(subject, options);
    this.#bot = bot;
    this.#tracking = tracking;
    const { retry, stallGrace, fetch, telemetry } = this.#settings;
    this.#calls = new Calls({
      retry,
      stallGrace,
      longPoll: fetch.timeout,
      token: bot.token,
      telemetry,
      report: (source, message, error) => this.#report(source, message, error),
    });
    const { journal } = this.#settings;
    this.#writer = journal === undefined
      ? undefined
      : new JournalWriter(journal, (message, error) => this.#report("journal", message, error));
  }

  stats(): SupplierStats {
    return this.#calls.stats();
  }

  /** The offset the next getUpdates sends. */
  nextOffset(): number {
    const { lastTaken } = this.#offsets;
    if (lastTaken < 0) return 0;
    // With a journal, everything taken is stored: confirming it is safe.
    return this.#holdsOffset() ? this.#offsets.watermark() : lastTaken + 1;
  }

  /** Whether the offset waits for the oldest unfinished update ("handled" without a journal). */
  #holdsOffset(): boolean {
    return this.#settings.confirm === "handled" && this.#writer === undefined;
  }

  /** Whether `update`, if it does not finish, comes again after a restart. */
  willResend(update: Y): boolean {
    return this.#writer !== undefined || this.#offsets.isUnconfirmed(update.update_id);
  }

  done(updateId: number): void {
    if (!this.#tracking) return;
    this.#writer?.finished(updateId);
    if (this.#offsets.finish(updateId)) {
      this.#advanced?.resolve();
      this.#advanced = undefined;
    }
  }

  async fetch(batchSize: number, signal: AbortSignal): Promise<Y[]> {
    const pace = Math.max(1, Math.min(100, Math.floor(batchSize) || 1));
    if (!this.#initialized && this.#bot.init !== undefined) {
      await this.#calls.retried("getMe", (attempt) => this.#bot.init!(attempt as never), signal);
    }
    this.#initialized = true;
    if (this.#writer !== undefined && this.#replay === undefined) await this.#openJournal(signal);
    if (this.#replay !== undefined && this.#replay.length > 0) return this.#replay.splice(0, pace);
    while (true) {
      const offset = this.nextOffset();
      const args = { ...this.#settings.fetch, offset, limit: this.#limit(pace) };
      this.#offsets.send(offset);
      const answer = await this.#calls.retried(
        "getUpdates",
        (attempt) => this.#getUpdates(args, attempt),
        signal,
        spanArguments(args),
      );
      this.#offsets.confirm(offset);
      const selected = this.#offsets.select(answer, offset);
      if (selected.restartedAt !== undefined) {
        this.#report(
          "getUpdates",
          `Update ids went backwards (${selected.restartedAt} after ${this.#offsets.lastTaken}): Telegram started a new sequence, taking it from there`,
        );
      }
      if (selected.fresh.length > 0 || answer.length === 0) {
        const journal = this.#settings.journal;
        if (journal !== undefined && selected.fresh.length > 0) {
          await this.#calls.retried("journal", () => journal.store(selected.fresh), signal);
        }
        this.#offsets.take(selected);
        return selected.fresh;
      }
      // Only updates that are running or done came back (the "handled" mode
      // holds the offset at the oldest unfinished one). If the offset moved
      // meanwhile, ask again at once; else wait until it moves.
      if (this.nextOffset() > offset) continue;
      const woken = new AbortController();
      this.#advanced ??= Promise.withResolvers<void>();
      await Promise.race([
        this.#advanced.promise,
        delay(1_000, AbortSignal.any([signal, woken.signal])),
      ]);
      woken.abort();
      if (signal.aborted) return [];
    }
  }

  /**
   * getUpdates' limit: the pace, plus, when the offset waits for the oldest
   * unfinished update, the updates past it that were taken already
   * (Telegram sends them again, and they would crowd out new ones), at most 100.
   */
  #limit(pace: number): number {
    const again = this.#holdsOffset() ? this.#offsets.takenAboveWatermark() : 0;
    return Math.min(100, pace + again);
  }

  /** Loads the journal: unfinished updates go first, ids up to its last one count as taken. */
  async #openJournal(signal: AbortSignal): Promise<void> {
    const journal = this.#settings.journal!;
    const state = await this.#calls.retried("journal", () => journal.open(), signal);
    const kept = state.unfinished.filter((update) => Number.isSafeInteger(update?.update_id));
    this.#replay = this.#offsets.resume(kept, state.lastId);
  }

  /**
   * Records what finished in the journal, then confirms every finished
   * update with one last getUpdates. Gives up when `signal` aborts (the
   * stop's deadline), reporting what stays unconfirmed: it comes again.
   */
  async confirm(signal?: AbortSignal): Promise<void> {
    if (this.#writer !== undefined) {
      await this.#writer.drain(signal);
      await this.#writer.compact(signal);
    }
    const offset = this.#tracking ? this.#offsets.watermark() : this.#offsets.lastTaken + 1;
    if (this.#offsets.lastTaken < 0 || offset <= this.#offsets.confirmed) return;
    this.#offsets.send(offset);
    for (let attempt = 1; attempt <= CONFIRM_ATTEMPTS && !signal?.aborted; attempt++) {
      try {
        const args = { offset, limit: 1, timeout: 0 };
        await this.#calls.watched(
          "confirm",
          (attempt) => this.#bot.api.getUpdates(args, attempt as never),
          signal,
          spanArguments(args),
        );
        this.#offsets.confirm(offset);
        return;
      } catch (error) {
        if (signal?.aborted) break;
        this.#report(
          "getUpdates",
          `Could not confirm updates below ${offset} (attempt ${attempt} of ${CONFIRM_ATTEMPTS}): ${
            this.#calls.describe(error)
          }`,
          error,
        );
        await delay(100 * attempt, signal);
      }
    }
    this.#report(
      "getUpdates",
      `Could not confirm updates below ${offset} ${
        signal?.aborted ? "before the stop ended" : `in ${CONFIRM_ATTEMPTS} attempts`
      }: Telegram sends those handled since the last poll again`,
    );
  }

  async #getUpdates(args: Parameters<PollingBot<Y>["api"]["getUpdates"]>[0], signal: AbortSignal) {
    const answer: unknown = await this.#bot.api.getUpdates(args, signal as never);
    if (!Array.isArray(answer)) throw new MalformedAnswer("getUpdates did not answer with a list");
    for (const update of answer) {
      if (
        typeof update !== "object" || update === null || !Number.isSafeInteger(update.update_id)
      ) {
        throw new MalformedAnswer("getUpdates answered with an update that has no valid update_id");
      }
    }
    return (answer as Y[]).toSorted((a, b) => a.update_id - b.update_id);
  }

  #report(source: "getUpdates" | "journal", message: string, error?: unknown): void {
    const { silent, reporter } = this.#settings;
    if (silent && source === "getUpdates" && reporter === defaultReporter) return;
    const report: Report = {
      source,
      message: this.#calls.describe(message),
      ...(error === undefined ? {} : { error: redactError(error, this.#bot.token) }),
    };
    safeReport(reporter, report);
  }
}

/** A getUpdates call's arguments as the attributes of its span. */
function spanArguments(args: { offset: number; limit: number; timeout: number }) {
  return {
    "grammy.getupdates.offset": args.offset,
    "grammy.getupdates.limit": args.limit,
    "grammy.getupdates.timeout": args.timeout,
  };
}

/** The options of a fetcher, checked, with their defaults. */
interface FetcherSettings<Y> {
  fetch: FetchOptions & { timeout: number };
  stallGrace: number;
  retry: RetrySettings;
  confirm: ConfirmMode;
  silent: boolean;
  reporter: Reporter;
  journal: UpdateJournal<Y> | undefined;
  telemetry: Telemetry | undefined;
}

/** Checks the options (throwing for bad ones) and fills in the defaults. */
function settingsOf<Y>(subject: string, options: RunnerOptions<Y>): FetcherSettings<Y> {
  optionalObject(subject, "options", options);
  knownOptions(subject, options, [
    "fetch",
    "maxRetryTime",
    "retryInterval",
    "maxConflictTime",
    "stallGrace",
    "confirm",
    "journal",
    "silent",
    "reporter",
    "telemetry",
  ]);
  const {
    fetch = {},
    maxRetryTime = 15 * 60 * 60 * 1000,
    retryInterval = "exponential",
    maxConflictTime = 30_000,
    stallGrace = 10_000,
    confirm = "fetched",
    silent = false,
    reporter = defaultReporter,
    journal,
    telemetry,
  } = options;
  optionalObject(subject, "fetch", fetch);
  knownOptions(subject, fetch, ["timeout", "allowed_updates"], "fetch");
  if (fetch.timeout !== undefined) numberInRange(subject, "fetch.timeout", fetch.timeout, 0);
  if (fetch.allowed_updates !== undefined && !Array.isArray(fetch.allowed_updates)) {
    throw new TypeError(
      `${subject} as 'fetch.allowed_updates' must be an array: current value is ${
        String(fetch.allowed_updates)
      }`,
    );
  }
  numberInRange(subject, "maxRetryTime", maxRetryTime, 0);
  if (typeof retryInterval === "number") {
    numberInRange(subject, "retryInterval", retryInterval, 0, MAX_DELAY);
  } else oneOf(subject, "retryInterval", retryInterval, ["exponential", "quadratic"]);
  numberInRange(subject, "maxConflictTime", maxConflictTime, 0);
  numberInRange(subject, "stallGrace", stallGrace, 1, MAX_DELAY);
  oneOf(subject, "confirm", confirm, ["fetched", "handled"]);
  oneOf(subject, "silent", silent, [true, false]);
  isFunction(subject, "reporter", reporter);
  if (journal !== undefined) {
    for (const method of ["open", "store", "finish", "compact"] as const) {
      isFunction(subject, `journal.${method}`, journal[method]);
    }
  }
  return {
    fetch: { ...fetch, timeout: fetch.timeout ?? 30 },
    stallGrace,
    retry: { maxRetryTime, retryInterval, maxConflictTime },
    confirm,
    silent,
    reporter,
    journal,
    telemetry: telemetryOf(subject, telemetry),
  };
}
