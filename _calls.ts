// The fetcher's calls (getMe, getUpdates, the journal) under one policy: the
// failure policy of `_retry.ts`, a watchdog that aborts a Bot API call gone
// silent, the counters behind `stats()`, and their telemetry.

import { abortable } from "./_async.ts";
import { clock, startTimer, stopTimer } from "./_clock.ts";
import { describe, redactError } from "./_redact.ts";
import { ConflictWatch, type RetrySettings, withRetries } from "./_retry.ts";
import { CallTelemetry, type Telemetry } from "./_telemetry.ts";
import type { SupplierStats } from "./source.ts";

/** What a call does. */
export type CallKind = "getMe" | "getUpdates" | "confirm" | "journal";

/** Where the calls report a failure they deal with (message and error not yet redacted). */
export type CallReport = (
  source: "getUpdates" | "journal",
  message: string,
  error?: unknown,
) => void;

/** What the calls need to know. */
export interface CallSettings {
  retry: RetrySettings;
  /** How long a Bot API call may stay silent past the time it may take, in ms. */
  stallGrace: number;
  /** The long poll's `timeout`, in seconds: the time a getUpdates may take. */
  longPoll: number;
  /** The bot token, to keep it out of reports and errors. */
  token: string | undefined;
  report: CallReport;
  /** Where metrics and spans go; `undefined` when no provider records them. */
  telemetry: Telemetry | undefined;
}

/** What each kind of call does, for reports and errors. */
const CALLS: Record<CallKind, string> = {
  getMe: "get the bot's info (getMe)",
  getUpdates: "fetch updates (getUpdates)",
  confirm: "confirm updates (getUpdates)",
  journal: "use the journal",
};

/** A Bot API call that got no answer in time (a connection that went silent). */
class StalledCall extends Error {
  override name = "StalledCall";
}

/** Makes the fetcher's calls and counts them. */
export class Calls {
  readonly #settings: CallSettings;
  /** 409s are one episode across calls (see `ConflictWatch`). */
  readonly #conflicts: ConflictWatch;
  readonly #telemetry: CallTelemetry | undefined;
  #polls = 0;
  #failures = 0;
  #lastSuccessAt: number | undefined;

  constructor(settings: CallSettings) {
    this.#settings = settings;
    this.#conflicts = new ConflictWatch(settings.retry.maxConflictTime);
    if (settings.telemetry !== undefined) {
      this.#telemetry = CallTelemetry.create(settings.telemetry, (error) => this.describe(error));
    }
  }

  stats(): SupplierStats {
    return { calls: this.#polls, failures: this.#failures, lastSuccessAt: this.#lastSuccessAt };
  }

  /** A one-line description of `error` without the token. */
  describe(error: unknown): string {
    return describe(error, this.#settings.token);
  }

  /**
   * Runs `call` until it succeeds, under the failure policy. A Bot API call
   * is watched (see `watched`); a journal call gets `signal` and is never
   * abandoned: once stored, a batch is taken. `attributes` describe a Bot
   * API call's arguments on its span.
   */
  retried<T>(
    kind: CallKind,
    call: (signal: AbortSignal) => Promise<T>,
    signal: AbortSignal,
    attributes?: Record<string, number>,
  ) {
    const polling = kind === "getUpdates";
    const journal = kind === "journal";
    const what = CALLS[kind];
    return withRetries(
      async () => {
        if (polling) {
          this.#polls++;
          this.#telemetry?.polled();
        }
        const result =
          await (journal ? call(signal) : this.watched(kind, call, signal, attributes));
        if (polling) this.#lastSuccessAt = clock().now();
        return result;
      },
      this.#settings.retry,
      {
        what,
        signal,
        ...(journal ? {} : { conflicts: this.#conflicts }),
        // A journal that rejects its own input will not change its mind.
        isFinal: (error) => journal && (error instanceof TypeError || error instanceof RangeError),
        onFailure: (error) => {
          if (!polling) return;
          this.#failures++;
          this.#telemetry?.pollFailed(error);
        },
        onRetry: (error, pause) =>
          this.#settings.report(
            journal ? "journal" : "getUpdates",
            `Could not ${what}, retrying in ${Math.round(pause)} ms: ${this.describe(error)}`,
            error,
          ),
        redact: (error) => redactError(error, this.#settings.token),
        describe: (error) => this.describe(error),
      },
    );
  }

  /**
   * Makes one Bot API call under a watchdog: the call's signal aborts with
   * `signal`, or when no answer came within the time the call may take (the
   * long poll for getUpdates) plus `stallGrace`; the call then rejects with
   * a `StalledCall` error, which the failure policy retries like a network
   * failure. It also stops waiting for a bot whose `init` ignores its signal.
   * With telemetry, the call gets a span (`attributes` describe its arguments).
   */
  watched<T>(
    kind: CallKind,
    call: (signal: AbortSignal) => Promise<T>,
    signal: AbortSignal | undefined,
    attributes?: Record<string, number>,
  ): Promise<T> {
    const telemetry = this.#telemetry;
    if (telemetry === undefined) return this.#watched(kind, call, signal);
    const method = kind === "getMe" ? "getMe" : "getUpdates";
    return telemetry.call(
      method,
      kind,
      attributes,
      signal,
      () => this.#watched(kind, call, signal),
    );
  }

  async #watched<T>(
    kind: CallKind,
    call: (signal: AbortSignal) => Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const { stallGrace, longPoll } = this.#settings;
    const limit = stallGrace + (kind === "getUpdates" ? longPoll * 1000 : 0);
    const stalled = new AbortController();
    const timer = startTimer(
      () => stalled.abort(new StalledCall(`${CALLS[kind]} got no answer within ${limit} ms`)),
      limit,
    );
    const combined = signal === undefined
      ? stalled.signal
      : AbortSignal.any([signal, stalled.signal]);
    try {
      return await abortable(call(combined), combined);
    } catch (error) {
      if (!stalled.signal.aborted || signal?.aborted) throw error;
      this.#telemetry?.stalled(kind);
      throw stalled.signal.reason;
    } finally {
      stopTimer(timer);
    }
  }
}
