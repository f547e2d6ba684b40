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
import { keysOf } from "./_keys.ts";
import { slotOf } from "./_slots.ts";
import { isFunction } from "./_validate.ts";

/**
 * The key or keys of an update, as the key function of `sequentialize()`
 * returns them: one key or an array of keys.
 *
 * A key is a string, a number or a bigint. Numbers and bigints count as their
 * decimal text, so `5`, `5n` and `"5"` are one key. Falsy keys (`undefined`,
 * `null`, `""`, `0`, `NaN`, `false`) are dropped, as `@grammyjs/runner` drops
 * them (Telegram ids are never 0); an update with no key left waits for
 * nothing. Any other value makes the middleware throw a `TypeError`: an
 * object (`ctx.chat` where `ctx.chat?.id` was meant), `true`, a function, a
 * symbol, or an array inside the array.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Context } from "grammy";
 * import type { Constraint } from "@grammyx/runner";
 *
 * // The chat and the sender: an update waits until both are free.
 * const chatAndSender = (ctx: Context): Constraint => [ctx.chat?.id, ctx.from?.id];
 * assert.deepEqual(chatAndSender({ chat: undefined, from: { id: 7 } } as Context), [undefined, 7]);
 * ```
 */
export type Constraint =
  | string
  | number
  | bigint
  | null
  | undefined
  | readonly (string | number | bigint | null | undefined)[];

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
 * - Keys are strings, numbers or bigints (`5` and `"5"` are one key); falsy
 *   keys (`undefined`, `null`, `""`, `0`) are dropped. See `Constraint`.
 * - Under `run()`, an update that waits for its key gives its concurrency slot
 *   back until its turn, so one busy chat cannot starve the others.
 *
 * @param constraint Returns the key(s) of a context, e.g. its chat id
 * @returns Middleware to install before everything that must be ordered
 * @throws {TypeError} if `constraint` is not a function
 * @throws {TypeError} (the middleware rejects, so grammY's error handler gets it) if
 *   `constraint` returns something that is not a key, such as `ctx.chat` for `ctx.chat?.id`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sequentialize } from "@grammyx/runner";
 *
 * type Ctx = { chat: number; name: string };
 * const ordered = sequentialize((ctx: Ctx) => ctx.chat);
 * const log: string[] = [];
 * const handle = (ctx: Ctx, until?: Promise<void>) =>
 *   ordered(ctx, async () => {
 *     log.push(`${ctx.name} starts`);
 *     await until;
 *     log.push(`${ctx.name} ends`);
 *   });
 *
 * const gate = Promise.withResolvers<void>(); // holds the first update of chat 1
 * const first = handle({ chat: 1, name: "1a" }, gate.promise);
 * const second = handle({ chat: 1, name: "1b" }); // same chat: waits for 1a
 * await handle({ chat: 2, name: "2a" }); // another chat: does not wait
 * assert.deepEqual(log, ["1a starts", "2a starts", "2a ends"]);
 *
 * gate.resolve();
 * await Promise.all([first, second]);
 * assert.deepEqual(log.slice(3), ["1a ends", "1b starts", "1b ends"]);
 * ```
 */
export function sequentialize<C>(
  constraint: (ctx: C) => Constraint,
): (ctx: C, next: () => void | Promise<void>) => Promise<void> {
  isFunction("Cannot create sequentialize middleware", "constraint", constraint);
  const chains = new KeyedChains();
  return async function sequentialized(ctx, next) {
    const keys = keysOf(constraint(ctx), "sequentialize() key function");
    if (keys.length > 0) slotOf(ctx)?.keyed(keys);
    await chains.run(keys, next, (earlier) => waitForTurn(ctx, earlier));
  };
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
