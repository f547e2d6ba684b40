// The distribute() worker module of the smoke suite (runtimes/smoke.ts), for
// Node (node:worker_threads) and Bun (Web Workers). It answers each text
// message with a JSON line naming the update, this worker and whether its
// chat already had an update running here, so the suite can check order,
// routing and overlaps from the fake Bot API's sentMessages. Settings come
// from the environment, which the suite sets before the first update.
//
// "crash-throw <file>" / "crash-exit <file>": the first time (the file does
// not exist yet; it is created), end the worker with an uncaught error or
// process.exit(1); afterwards, handle it like any other message.

import { existsSync, writeFileSync } from "node:fs";
import process from "node:process";
import { BotWorker } from "@grammyx/runner/worker";

const token = process.env.GRAMMYX_SMOKE_TOKEN ?? "123456:TEST-fake-token";
const apiRoot = process.env.GRAMMYX_SMOKE_API_ROOT ?? "http://127.0.0.1:9";
const worker = crypto.randomUUID().slice(0, 8);

const bot = new BotWorker(token, { client: { apiRoot } });
const busy = new Set<number>();

bot.on("message:text", async (ctx) => {
  const chat = ctx.chat.id;
  const id = ctx.update.update_id;
  const overlap = busy.has(chat);
  busy.add(chat);
  try {
    const [command, marker = ""] = ctx.msg.text.split(" ");
    if (command?.startsWith("crash-") && !existsSync(marker)) {
      writeFileSync(marker, "");
      if (command === "crash-exit") process.exit(1);
      setTimeout(() => {
        throw new Error(`crash on purpose in bot${token}`);
      }, 0);
      return await new Promise<never>(() => {});
    }
    await new Promise((resolve) => setTimeout(resolve, id % 3));
    await ctx.api.sendMessage(chat, JSON.stringify({ id, worker, overlap }));
  } finally {
    busy.delete(chat);
  }
});
