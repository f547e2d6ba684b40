// The failure policy for calls to the Bot API (and the journal): which
// errors end the run, which are retried, and how long to wait in between.

import { delay } from "./_async.ts";
import { clock, MAX_DELAY } from "./_clock.ts";
import { PollingError, type PollingFailure } from "./errors.ts";

/** The user's retry settings. */
export interface RetrySettings {
  retryInterval: "exponential" | "quadratic" | number;
  maxRetryTime: number;
  maxConflictTime: number;
}

/**
 * Follows 409 Conflict answers across calls. An episode starts with a 409
 * and goes on while the next comes within `maxConflictTime` of the last, even
 * with successful calls in between (two pollers take turns: each one's poll
 * ends the other's); once it has lasted `maxConflictTime`, the run ends.
 */
export class ConflictWatch {
  readonly #maxConflictTime: number;
  #since: number | undefined;
  #last: number | undefined;

  constructor(maxConflictTime: number) {
    this.#maxConflictTime = maxConflictTime;
  }

  /** Records a 409 at `now`; returns how long the episode has lasted. */
  conflict(now: number): number {
    if (this.#last === undefined || now - this.#last > this.#maxConflictTime) this.#since = now;
    this.#last = now;
    return now - this.#since!;
  }
}

/** What one retried call needs besides the settings. */
export interface RetryContext {
  /** What the call does, for messages: "fetch updates (getUpdates)". */
  what: string;
  signal: AbortSignal;
  /** The 409 episode this call belongs to (shared by the calls of one poller). */
  conflicts?: ConflictWatch;
  /** Errors that no retry can fix (rethrown as they are). */
  isFinal?: (error: unknown) => boolean;
  /** Called before each pause with the failure and the pause in ms. */
  onRetry: (error: unknown, pause: number) => void;
  /** Called on every failure (for counters). */
  onFailure?: (error: unknown) => void;
  /** A copy of an error without the token, for the cause of a `PollingError`. */
  redact: (error: unknown) => Error;
  /** A one-line description without the token. */
  describe: (error: unknown) => string;
}

/** Growing pauses stop here. */
const RETRY_CAP = 30_000;

/**
 * Runs `call` until it succeeds. 401/404 end at once, 409 is retried for
 * `maxConflictTime`, 429 waits `retry_after`, the rest backs off (capped,
 * jittered) for up to `maxRetryTime`; giving up throws a `PollingError`.
 */
export async function withRetries<T>(
  call: () => Promise<T>,
  settings: RetrySettings,
  context: RetryContext,
): Promise<T> {
  const { retryInterval, maxRetryTime, maxConflictTime } = settings;
  const { what, signal } = context;
  const conflicts = context.conflicts ?? new ConflictWatch(maxConflictTime);
  let firstFailure: number | undefined;
  let pause = typeof retryInterval === "number" ? retryInterval : 100;
  while (true) {
    try {
      return await call();
    } catch (error) {
      if (signal.aborted || context.isFinal?.(error)) throw error;
      context.onFailure?.(error);
      const now = clock().now();
      firstFailure ??= now;
      const code = errorCode(error);
      const fail = (reason: PollingFailure, message: string) =>
        new PollingError(reason, message, {
          cause: context.redact(error),
          ...(code === undefined ? {} : { error_code: code }),
        });
      if (code === 401 || code === 404) {
        throw fail(
          "unauthorized",
          `The Bot API rejected the bot token (${code}); check the token you passed to the bot`,
        );
      }
      if (code === 409 && conflicts.conflict(now) >= maxConflictTime) {
        throw fail(
          "conflict",
          `Another instance is polling getUpdates with this token (409 Conflict) for longer than maxConflictTime (${maxConflictTime} ms); stop the other instance or remove its webhook`,
        );
      }
      if (now - firstFailure >= maxRetryTime) {
        throw fail(
          "retries",
          `Could not ${what} for longer than maxRetryTime (${maxRetryTime} ms): ${
            context.describe(error)
          }`,
        );
      }
      const retryAfter = code === 429 ? retryAfterSeconds(error) : undefined;
      const wait = Math.min(
        MAX_DELAY,
        retryAfter !== undefined ? retryAfter * 1000 : jitter(pause, retryInterval),
      );
      context.onRetry(error, wait);
      await delay(wait, signal);
      if (signal.aborted) throw error;
      if (retryAfter === undefined) pause = grow(pause, retryInterval);
    }
  }
}

/**
 * The pause before reconnection attempt `attempt` (1, 2, ...): 100 ms
 * doubling, capped at `cap` ms, jittered (50–100 %), like a growing retry.
 */
export function reconnectPause(attempt: number, cap: number): number {
  let pause = 100;
  for (let i = 1; i < attempt && pause < cap; i++) pause = grow(pause, "exponential");
  return jitter(Math.min(pause, cap), "exponential");
}

function grow(pause: number, interval: RetrySettings["retryInterval"]): number {
  if (interval === "exponential") return Math.min(RETRY_CAP, pause * 2);
  if (interval === "quadratic") return Math.min(RETRY_CAP, pause + 100);
  return pause;
}

/** 50–100 % of a growing pause, so that many bots do not retry in lockstep. */
function jitter(pause: number, interval: RetrySettings["retryInterval"]): number {
  return typeof interval === "number" ? pause : pause * (0.5 + Math.random() / 2);
}

function errorCode(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null || !("error_code" in error)) return undefined;
  return typeof error.error_code === "number" ? error.error_code : undefined;
}

function retryAfterSeconds(error: unknown): number | undefined {
  const parameters = (error as { parameters?: { retry_after?: unknown } }).parameters;
  const seconds = parameters?.retry_after;
  return typeof seconds === "number" && seconds >= 0 ? seconds : undefined;
}
