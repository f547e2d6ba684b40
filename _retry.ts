// The failure policy for calls to the Bot API (and the journal): which
// errors end the run, which are retried, and how long to wait in between.

import { delay } from "./_async.ts";

/** Why polling ended for good. */
export type PollingFailure = "unauthorized" | "conflict" | "retries";

/** The error a run ends with when getUpdates cannot go on. */
export class PollingError extends Error {
  /** What went wrong: a rejected token, another poller, or retries used up. */
  readonly reason: PollingFailure;
  /** The Bot API error code, if there was one. */
  readonly error_code: number | undefined;

  /**
   * Creates the error; the runner does this, you rarely need to.
   *
   * @param reason What went wrong
   * @param message A message without the token
   * @param options The (redacted) cause and error code
   */
  constructor(
    reason: PollingFailure,
    message: string,
    options: { cause?: unknown; error_code?: number } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "PollingError";
    this.reason = reason;
    this.error_code = options.error_code;
  }
}

/** The user's retry settings. */
export interface RetrySettings {
  retryInterval: "exponential" | "quadratic" | number;
  maxRetryTime: number;
  maxConflictTime: number;
}

/** What one retried call needs besides the settings. */
export interface RetryContext {
  /** What the call does, for messages: "fetch updates (getUpdates)". */
  what: string;
  signal: AbortSignal;
  /** Errors that no retry can fix (rethrown as they are). */
  isFinal?: (error: unknown) => boolean;
  /** Called before each pause with the failure and the pause in ms. */
  onRetry: (error: unknown, pause: number) => void;
  /** Called on every failure (for counters). */
  onFailure?: () => void;
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
  let firstFailure: number | undefined;
  let conflictSince: number | undefined;
  let pause = typeof retryInterval === "number" ? retryInterval : 100;
  while (true) {
    try {
      return await call();
    } catch (error) {
      if (signal.aborted || context.isFinal?.(error)) throw error;
      context.onFailure?.();
      const now = Date.now();
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
      conflictSince = code === 409 ? conflictSince ?? now : undefined;
      if (conflictSince !== undefined && now - conflictSince >= maxConflictTime) {
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
      const wait = retryAfter !== undefined ? retryAfter * 1000 : jitter(pause, retryInterval);
      context.onRetry(error, wait);
      await delay(wait, signal);
      if (signal.aborted) throw error;
      if (retryAfter === undefined) pause = grow(pause, retryInterval);
    }
  }
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
