/**
 * The one interface every subject implements: how to put a grammY `Bot` under
 * a runner, and how to stop it. Subjects live in `bench/subjects/` and are
 * listed in `bench/_subjects.ts`; a subject process loads only its own.
 *
 * ```ts
 * import type { Driver } from "./_driver.ts";
 *
 * const sequential: Driver = {
 *   start(bot) {
 *     const ended = bot.start({ timeout: 1 });
 *     return { stop: () => bot.stop(), ended };
 *   },
 * };
 * ```
 *
 * @module
 */

import type { Bot, Context, MiddlewareFn } from "grammy";

/** The chat key every `sequentialize` in the bench gets. */
export type ChatKey = (ctx: Context) => string | undefined;

/** What a scenario asks of every subject. */
export interface DriverOptions {
  /** How many updates may run at once (subjects without a bound ignore it). */
  concurrency: number;
  /** Updates taken and not finished at most (subjects without such a bound ignore it). */
  maxPending?: number;
}

/** A bot under a runner. */
export interface Running {
  /** Stops fetching the way the subject's users would (`await handle.stop()`). */
  stop: () => Promise<void>;
  /** Settles when the runner ends; before `stop()`, that is a crash. */
  ended: Promise<unknown>;
  /** Updates taken and not finished, if the runner tells. */
  size?: () => number;
}

/** A runner under test. */
export interface Driver {
  /** The subject's own `sequentialize`, if it has one. */
  sequentialize?: (key: ChatKey) => MiddlewareFn<Context>;
  /** Starts `bot` (already initialised, handlers installed). */
  start: (bot: Bot, options: DriverOptions) => Running;
}
