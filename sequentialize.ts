/**
 * Keeps updates that share a key (a chat, a user, a session key) strictly in
 * order while updates of different keys run in parallel. Install it first,
 * with the same key function your session uses, so that session data never
 * suffers a write-after-read race.
 *
 * ```ts
 * import { Bot, type Context } from "grammy";
 * import { sequentialize } from "@grammyx/runner";
 *
 * const bot = new Bot("123:placeholder-token");
 * bot.use(sequentialize((ctx: Context) => ctx.chat?.id.toString()));
 * ```
 *
 * @module
 */

import { KeyedChains } from "./_chain.ts";
import { slotOf } from "./_slots.ts";
import { isFunction } from "./_validate.ts";

/**
 * The key or keys of an update. `undefined`, `null`, `""` and `[]` mean no
 * constraint, and so does any falsy key, as with `@grammyjs/runner`.
 */
export type Constraint = string | null | undefined | readonly (string | null | undefined)[];

/**
 * Creates middleware that runs updates with a common key one after another,
 * in the order they reached it, and updates without a common key at once.
 *
 * - An update may have several keys (`[chatId, userId]`): it waits until every
 *   one of them is free.
 * - A failing update does not block the ones after it; its error still
 *   reaches the caller (grammY's error handler).
 * - A key is forgotten as soon as its last update is done, so memory grows
 *   with the updates in flight, not with the keys ever seen.
 * - Under `run()`, an update that waits for its key gives its concurrency slot
 *   back until its turn, so one busy chat cannot starve the others.
 *
 * @param constraint Returns the key(s) of a context, e.g. its chat id
 * @returns Middleware to install before everything that must be ordered
 * @throws {TypeError} if `constraint` is not a function
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sequentialize } from "@grammyx/runner";
 *
 * type Ctx = { key: string; log: string[] };
 * const ordered = sequentialize((ctx: Ctx) => ctx.key);
 * const log: string[] = [];
 * const slow = (ctx: Ctx, ms: number) =>
 *   ordered(ctx, () => new Promise<void>((ok) => setTimeout(() => (log.push(ctx.log[0]!), ok()), ms)));
 *
 * await Promise.all([
 *   slow({ key: "a", log: ["a1"] }, 20),
 *   slow({ key: "a", log: ["a2"] }, 0),
 *   slow({ key: "b", log: ["b1"] }, 0),
 * ]);
 * assert.deepEqual(log, ["b1", "a1", "a2"]);
 * ```
 */
export function sequentialize<C>(
  constraint: (ctx: C) => Constraint,
): (ctx: C, next: () => void | Promise<void>) => Promise<void> {
  isFunction("Cannot create sequentialize middleware", "constraint", constraint);
  const chains = new KeyedChains();
  return async function sequentialized(ctx, next) {
    await chains.run(keysOf(constraint(ctx)), next, (earlier) => waitForTurn(ctx, earlier));
  };
}

/** Normalises a constraint into a list of distinct keys, dropping the falsy ones. */
function keysOf(constraint: Constraint): string[] {
  const keys: readonly unknown[] = Array.isArray(constraint) ? constraint : [constraint];
  return [...new Set(keys.filter((key): key is string => Boolean(key)))];
}

/**
 * Waits for the earlier updates of the same keys (their promises never
 * reject), holding no concurrency slot meanwhile if a sink of this module
 * runs the update.
 */
async function waitForTurn(ctx: unknown, earlier: Promise<unknown>): Promise<void> {
  const slot = slotOf(ctx);
  slot?.release();
  await earlier;
  await slot?.acquire();
}
