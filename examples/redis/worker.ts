// A worker of a fleet: start as many as you like, on any machines that reach
// the Redis. Each holds about partitions / workers of the queue's partitions
// (they rebalance as workers come and go) and runs their updates through the
// same sink as run(): many chats at once, each chat in update_id order.
//
//   BOT_TOKEN=... REDIS_URL=redis://127.0.0.1:6379 \
//     deno run --allow-net --allow-env examples/redis/worker.ts

import { Bot, type Context, session, type SessionFlavor } from "grammy";
import { runFrom } from "../../queue.ts";
import { connectRedis, redisQueue } from "../../redis_queue.ts";

const token = Deno.env.get("BOT_TOKEN");
if (!token) {
  console.error("Set BOT_TOKEN (and REDIS_URL, default redis://127.0.0.1:6379)");
  Deno.exit(2);
}
const redis = await connectRedis(Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379");

type MyContext = Context & SessionFlavor<{ count: number }>;
const bot = new Bot<MyContext>(token);
// Sessions must live where every worker sees them: here, the same Redis.
bot.use(session({
  initial: () => ({ count: 0 }),
  storage: {
    read: async (key) => {
      const value = await redis.get(`my-bot:session:${key}`);
      return value === null ? undefined : JSON.parse(value);
    },
    write: async (key, value) =>
      void await redis.set(`my-bot:session:${key}`, JSON.stringify(value)),
    delete: async (key) => void await redis.del(`my-bot:session:${key}`),
  },
}));
bot.on("message", async (ctx) => {
  ctx.session.count++;
  await ctx.reply(`Message ${ctx.session.count} of this chat`);
});
bot.catch((error) => console.error(`Update ${error.ctx.update.update_id} failed:`, error.error));

// No sequentialize() needed: the queue runs each chat's updates one at a time.
const queue = redisQueue(redis, { prefix: "my-bot:", partitions: 16 });
const worker = runFrom(bot, queue, { concurrency: 200, leaseMilliseconds: 15_000 });

async function shutDown() {
  await worker.stop(); // takes nothing new, finishes and records what it started
  await queue.close();
  redis.destroy();
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", shutDown);
Deno.addSignalListener("SIGTERM", shutDown);
await worker.task();
