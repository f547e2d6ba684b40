// The key of a queued update. The key function has `sequentialize()`'s
// signature: it gets a grammY `Context` around the update (with no `api` to
// call and no plugin state such as `ctx.session`), so a key function of
// `sequentialize()` that reads only the update serves `kvQueue()` and
// `redisQueue()` too. Not exported by mod.ts.

import { keysOf } from "./_keys.ts";
import { Context, type Update } from "./_deps.ts";

/**
 * The default key of the queues: the chat id, else the sender's id (a poll
 * answer's voter, whom grammY's `ctx.from` leaves out, included).
 */
export function chatOrSender(ctx: Context): number | undefined {
  return ctx.chat?.id ?? ctx.from?.id ?? ctx.pollAnswer?.user?.id ??
    ctx.pollAnswer?.voter_chat?.id;
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
