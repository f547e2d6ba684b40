// A poller or a worker process of the Redis fleet tests (tests/_redis_fleet.ts).
//
//   deno run ... _redis_child.ts poller|worker <apiRoot> <token> <redisUrl> <prefix> <partitions> <leaseMs>
//
// The worker keeps a session counter per chat in Redis (one HINCRBY per
// update: a counter that a lost or repeated update would get wrong) and,
// after its work, sends the update id back to the fake Bot API with
// sendMessage: what the API received is the record of what was handled.
// Both print "ready" once running, stop on SIGTERM and print "stopped <json>".

import { Bot } from "grammy";
import { forward } from "../forward.ts";
import { runFrom } from "../queue.ts";
import { connectRedis, redisQueue } from "../redis_queue.ts";

const [role, apiRoot, token, redisUrl, prefix, partitions, leaseMs] = Deno.args;
const bot = new Bot(token!, { client: { apiRoot: apiRoot! } });
const redis = await connectRedis(redisUrl!, { reporter: () => {} });
const queue = redisQueue(redis, { prefix: prefix!, partitions: Number(partitions) });
const reporter = (report: { message: string }) => console.error(`[${role}] ${report.message}`);

bot.on("message", async (ctx) => {
  const chat = ctx.chat.id;
  await redis.sendCommand(["HINCRBY", `${prefix}session`, String(chat), "1"]);
  // A little work, so that updates overlap and kills catch some in flight.
  await new Promise((resolve) => setTimeout(resolve, 1 + (ctx.update.update_id % 3)));
  await ctx.api.sendMessage(chat, String(ctx.update.update_id));
});
bot.catch((error) => console.error(`[${role}] handler failed: ${error.message}`));

const handle = role === "poller"
  ? forward(bot, queue, { runner: { fetch: { timeout: 1 }, reporter } })
  : runFrom(bot, queue, {
    concurrency: 64,
    leaseMilliseconds: Number(leaseMs),
    pollMilliseconds: 100,
    reporter,
  });

Deno.addSignalListener("SIGTERM", async () => {
  const result = await handle.stop();
  await queue.close();
  redis.destroy();
  console.log(
    `stopped ${JSON.stringify({ ...handle.stats(), unfinished: result.unfinished.length })}`,
  );
  Deno.exit(0);
});
console.log("ready");
await handle.task()?.catch((error) => {
  console.error(`[${role}] ended: ${error.message}`);
  Deno.exit(1);
});
