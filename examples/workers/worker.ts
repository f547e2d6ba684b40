/**
 * The worker half of examples/workers/main.ts: a bot whose handler counts
 * the primes below a number with a sieve of Eratosthenes, a CPU-heavy job
 * that would block every other chat if it ran on the main thread.
 *
 * It reads the same BOT_TOKEN as the main thread (main.ts sets it, and
 * BOT_API_ROOT, when it runs against the fake Bot API).
 *
 * @module
 */

import { BotWorker } from "../../worker.ts";

const token = Deno.env.get("BOT_TOKEN");
if (token === undefined) throw new Error("Set BOT_TOKEN (main.ts does that for the fake Bot API)");
const apiRoot = Deno.env.get("BOT_API_ROOT");

const bot = new BotWorker(token, apiRoot === undefined ? {} : { client: { apiRoot } });
const thread = (globalThis as { name?: string }).name ?? "worker";

bot.on("message:text", async (ctx) => {
  const limit = Number.parseInt(ctx.msg.text, 10);
  if (!Number.isSafeInteger(limit) || limit < 2 || limit > 50_000_000) {
    await ctx.reply("Send me a number from 2 to 50 000 000 and I count the primes below it.");
    return;
  }
  await ctx.reply(`There are ${countPrimes(limit)} primes below ${limit} (counted by ${thread})`);
});

bot.catch((error) => {
  // Handled here, so it does not reach the main thread's error handler.
  console.error(`Update ${error.ctx.update.update_id} failed: ${error.message}`);
});

/** Counts the primes below `limit` with a sieve of Eratosthenes. */
function countPrimes(limit: number): number {
  const composite = new Uint8Array(limit);
  let count = 0;
  for (let n = 2; n < limit; n++) {
    if (composite[n]) continue;
    count++;
    for (let multiple = n * n; multiple < limit; multiple += n) composite[multiple] = 1;
  }
  return count;
}
