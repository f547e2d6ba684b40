// The poller of a fleet: the one process that long-polls Telegram (a token
// allows one getUpdates consumer). It runs no bot code: it stores each batch
// in Redis and confirms it to Telegram only once Redis acknowledged it.
// Start one; restart it freely (a killed poller loses nothing).
//
//   BOT_TOKEN=... REDIS_URL=redis://127.0.0.1:6379 \
//     deno run --allow-net --allow-env examples/redis/poller.ts

import { Bot } from "grammy";
import { forward } from "../../forward.ts";
import { connectRedis, redisQueue } from "../../redis_queue.ts";

const token = Deno.env.get("BOT_TOKEN");
if (!token) {
  console.error("Set BOT_TOKEN (and REDIS_URL, default redis://127.0.0.1:6379)");
  Deno.exit(2);
}
const bot = new Bot(token);
// Rejects at once, without the password, if nothing answers at the URL.
const redis = await connectRedis(Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379");
// Every poller and worker of one bot: the same prefix and partitions.
const queue = redisQueue(redis, { prefix: "my-bot:", partitions: 16 });
const poller = forward(bot, queue);

const every = setInterval(() => {
  const { handled, lastPollAt } = poller.stats();
  console.log(`stored ${handled} updates; last poll ${new Date(lastPollAt ?? 0).toISOString()}`);
}, 10_000);

async function shutDown() {
  clearInterval(every);
  await poller.stop(); // ends the long poll, stores and confirms the batch in hand
  await queue.close();
  redis.destroy();
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", shutDown);
Deno.addSignalListener("SIGTERM", shutDown);
await poller.task();
