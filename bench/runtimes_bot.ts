/**
 * The bot process of `bench/runtimes.ts`, the same file on Deno, Node and
 * Bun: `run()` with `sequentialize()` by chat and an empty handler, against
 * the fake Bot API of the bench process. Once `<updates>` updates were
 * handled it stops the runner and prints one JSON line: the updates and the
 * milliseconds from `run()` to the last one handled.
 *
 * ```sh
 * node bench/runtimes_bot.ts <apiRoot> <token> <updates>   # (from the packed copy)
 * ```
 *
 * @module
 */

import process from "node:process";
import { Bot, type Context } from "grammy";
import { run, sequentialize } from "@grammyx/runner";

const [apiRoot, token, count] = process.argv.slice(2);
const updates = Number(count);
if (apiRoot === undefined || token === undefined || !(updates > 0)) {
  throw new TypeError("Usage: runtimes_bot.ts <apiRoot> <token> <updates>");
}

const bot = new Bot(token, { client: { apiRoot } });
await bot.init();
bot.use(sequentialize((ctx: Context) => ctx.chat?.id.toString()));
let handled = 0;
const all = Promise.withResolvers<void>();
bot.on("message", () => {
  if (++handled === updates) all.resolve();
});
const start = performance.now();
const handle = run(bot, { runner: { silent: true } });
await all.promise;
const ms = performance.now() - start;
await handle.stop();
console.log(JSON.stringify({ updates: handled, ms }));
