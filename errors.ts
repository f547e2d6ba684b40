/**
 * The error a run ends with when polling cannot go on: `handle.task()`
 * rejects with a `PollingError` whose `reason` says why (a rejected token,
 * another poller, or retries used up).
 *
 * ```ts ignore
 * import { run, PollingError } from "@grammyx/runner";
 *
 * run(bot).task()?.catch((error) => {
 *   if (error instanceof PollingError && error.reason === "conflict") process.exit(1);
 * });
 * ```
 *
 * @module
 */

/** Why polling ended for good. */
export type PollingFailure = "unauthorized" | "conflict" | "retries";

/**
 * The error a run ends with when getUpdates cannot go on. Its message never
 * holds the bot token; `cause` is a redacted copy of the last failure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Bot } from "grammy";
 * import { PollingError, run } from "@grammyx/runner";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 *
 * await using api = await FakeBotApi.start();
 * const bot = new Bot("123:wrong-token", { client: { apiRoot: api.apiRoot } });
 * const handle = run(bot, { runner: { reporter: () => {} } });
 * const error = await handle.task()!.catch((error) => error);
 * assert.ok(error instanceof PollingError);
 * assert.equal(error.reason, "unauthorized");
 * assert.equal(error.error_code, 401);
 * ```
 */
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
