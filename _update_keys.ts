// The key of a queued update, found the way `sequentialize()` finds it: the
// key function gets a grammY `Context` around the update (with no `api` to
// call), so one function serves `sequentialize()`, `kvQueue()` and
// `redisQueue()`. Not exported by mod.ts.

import { keysOf } from "./_keys.ts";
import { Context, type Update } from "./_deps.ts";

/** The default key of the queues: the chat id, else the sender's id. */
export function chatOrSender(ctx: Context): number | undefined {
  return ctx.chat?.id ?? ctx.from?.id;
}

/**
 * The first key `key` gives `update` (an array puts the update under its
 * first key), or `undefined` for none.
 *
 * @param source Names the key function at the start of an error message
 * @throws {TypeError} if the key function returns what is not a key
 */
export function firstKeyOf<C>(
  update: { update_id: number },
  key: (ctx: C) => unknown,
  source: string,
): string | undefined {
  const ctx = new Context(update as Update, undefined as never, undefined as never);
  return keysOf(key(ctx as C), source)[0];
}
