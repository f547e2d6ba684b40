// A webhook bot for Deno Deploy, deployable as it is: the webhook handler
// stores each update in Deno KV and answers Telegram at once; the worker in
// the same isolate runs the stored updates, each chat in order, and so does
// every other isolate Deploy starts. On a VPS the same file runs with a KV
// file instead (see the README, "Webhooks and Deno Deploy").
//
//   Deploy:  entrypoint examples/deploy/main.ts, env BOT_TOKEN and WEBHOOK_SECRET
//   VPS:     BOT_TOKEN=... WEBHOOK_SECRET=... KV_PATH=./bot.kv \
//              deno run --unstable-kv -A examples/deploy/main.ts
//   Then:    deno run -A examples/deploy/set_webhook.ts https://<your-app>/
//
// Outside this repository, import from the package instead:
//   import { runFromKv, webhookToKv } from "jsr:@grammyx/runner/kv_queue";

import { Bot } from "grammy";
import { runFromKv, webhookToKv } from "../../kv_queue.ts";

const token = Deno.env.get("BOT_TOKEN");
const secretToken = Deno.env.get("WEBHOOK_SECRET");
if (token === undefined || secretToken === undefined) {
  throw new Error("Set BOT_TOKEN and WEBHOOK_SECRET (1-256 characters A-Z a-z 0-9 _ -)");
}

const bot = new Bot(token);
bot.command("start", (ctx) => ctx.reply("Hi! Send me anything and I will echo it."));
bot.on("message:text", (ctx) => ctx.reply(ctx.message.text));
bot.catch((error) => console.error(`Update ${error.ctx.update.update_id} failed:`, error.error));

// Deno Deploy's KV when KV_PATH is not set; a local SQLite file when it is.
const kv = await Deno.openKv(Deno.env.get("KV_PATH"));
const stop = new AbortController();

// The ingress: answers 200 only once the update is stored (once per update_id).
const server = Deno.serve(
  { port: Number(Deno.env.get("PORT") ?? 8000), signal: stop.signal },
  webhookToKv(kv, { secretToken }),
);
// The worker: runs the stored updates through the same sink as run().
const worker = runFromKv(bot, kv, { signal: stop.signal });

// On a VPS, Ctrl-C or SIGTERM stops taking updates, drains and exits.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  try {
    Deno.addSignalListener(signal, () => stop.abort());
  } catch {
    // Not available (Deno Deploy ends isolates on its own).
  }
}
await server.finished;
await worker.stop();
kv.close();
