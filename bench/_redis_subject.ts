/**
 * A bot process of the Redis bench (`redis.ts`): `run` (one process with
 * `run()`), `poller` (`forward()` into Redis) or `worker` (`runFrom()` out
 * of Redis).
 *
 * ```sh
 * deno run ... _redis_subject.ts <run|poller|worker> <apiRoot> <token> <redisUrl> <cpu|io> <ms>
 * ```
 *
 * Each handler burns `ms` of CPU (cpu) or awaits `ms` (io), then sends
 * `"<update id> <start ms>"` to the fake Bot API: what the API received is
 * the record of what ran, in which order, and when it started. Prints
 * "ready" once running and "stopped" after SIGTERM.
 *
 * @module
 */

import { Bot, type Context } from "grammy";
import { run, sequentialize } from "@grammyx/runner";
import { forward } from "../forward.ts";
import { runFrom } from "../queue.ts";
import { connectRedis, redisQueue } from "../redis_queue.ts";

const [role, apiRoot, token, redisUrl, kind, ms] = Deno.args;
const work = Number(ms);
const bot = new Bot(token!, { client: { apiRoot: apiRoot! } });
if (role === "run") bot.use(sequentialize((ctx: Context) => ctx.chat?.id));
bot.on("message", async (ctx) => {
  const started = Date.now();
  if (kind === "cpu") {
    const until = performance.now() + work;
    while (performance.now() < until) { /* keep the thread busy */ }
  } else {
    await new Promise((resolve) => setTimeout(resolve, work));
  }
  await ctx.api.sendMessage(ctx.chat.id, `${ctx.update.update_id} ${started}`);
});
bot.catch((error) => console.error(`[${role}] ${error.message}`));

const redis = role === "run" ? undefined : await connectRedis(redisUrl!);
const queue = redis === undefined ? undefined : redisQueue(redis, { prefix: "bench:" });
const handle = role === "run"
  ? run(bot, { runner: { fetch: { timeout: 1 } }, sink: { concurrency: 500 } })
  : role === "poller"
  ? forward(bot, queue!, { runner: { fetch: { timeout: 1 } } })
  : runFrom(bot, queue!, { concurrency: 500, pollMilliseconds: 200 });

Deno.addSignalListener("SIGTERM", async () => {
  await handle.stop();
  await queue?.close();
  redis?.destroy();
  console.log("stopped");
  Deno.exit(0);
});
console.log("ready");
await handle.task();
