/**
 * A bot whose CPU-heavy handler runs on worker threads: the main thread
 * fetches updates with `run()` and `distribute()` hands each one to a
 * `BotWorker` (see worker.ts); each chat stays on one worker, in order.
 *
 * With no BOT_TOKEN, it starts a fake Bot API, pushes 200 numbers over 20
 * chats, waits for every answer, prints a summary and stops:
 *
 *   deno run -A examples/workers/main.ts
 *   (or precisely: deno run --allow-net --allow-env --allow-read examples/workers/main.ts)
 *
 * With BOT_TOKEN set, it runs your bot until Ctrl+C. WORKERS sets the number
 * of threads: 2 here, so that the split shows even on a small machine
 * (`distribute()` itself defaults to one per core but one).
 *
 * @module
 */

import { Bot } from "grammy";
import { run } from "../../mod.ts";
import { distribute } from "../../distribute.ts";
import { FakeBotApi } from "../../testing.ts";

const count = Number(Deno.env.get("WORKERS") ?? 2);
const middleware = distribute(new URL("./worker.ts", import.meta.url), { count });

if (Deno.env.has("BOT_TOKEN")) {
  const bot = new Bot(Deno.env.get("BOT_TOKEN")!);
  bot.use(middleware);
  bot.catch((error) =>
    console.error(`Update ${error.ctx.update.update_id} failed: ${error.message}`)
  );
  const handle = run(bot);
  Deno.addSignalListener("SIGINT", () => void handle.stop());
  console.log("Running; press Ctrl+C to stop");
  await handle.task();
} else {
  await demo();
}

/** Runs the bot against a fake Bot API and prints what happened. */
async function demo(): Promise<void> {
  await using api = await FakeBotApi.start();
  Deno.env.set("BOT_TOKEN", api.token); // the workers read them
  Deno.env.set("BOT_API_ROOT", api.apiRoot);
  const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
  bot.use(middleware);
  bot.catch((error) =>
    console.error(`Update ${error.ctx.update.update_id} failed: ${error.message}`)
  );

  const updates = 200;
  api.pushMessages(updates, {
    chats: 20,
    text: (index) => String(1_000_000 + 50_000 * (index % 20)),
  });
  const started = performance.now();
  const handle = run(bot, { runner: { fetch: { timeout: 1 } } });
  const finished = () => {
    const { handled, failed, timedOut } = handle.stats();
    return handled + failed + timedOut;
  };
  while (finished() < updates) await new Promise((ok) => setTimeout(ok, 10));
  const seconds = (performance.now() - started) / 1000;
  await handle.stop(); // waits for the workers, confirms the updates, terminates the threads

  // Each chat stays on one thread (chosen by a hash of its id).
  const perThread = new Map<string, { answers: number; chats: Set<number | string> }>();
  for (const { chat_id, text } of api.sentMessages) {
    const thread = /counted by (.+)\)$/.exec(text)?.[1] ?? "?";
    const entry = perThread.get(thread) ?? { answers: 0, chats: new Set() };
    entry.answers++;
    entry.chats.add(chat_id);
    perThread.set(thread, entry);
  }
  console.log(api.sentMessages[0]?.text);
  const { failed } = handle.stats();
  console.log(
    `Answered ${updates - failed} of ${updates} messages from 20 chats in ${seconds.toFixed(2)} s`,
  );
  for (const [thread, { answers, chats }] of [...perThread].sort()) {
    console.log(`  ${thread}: ${answers} answers to ${chats.size} chats`);
  }
  console.log(`Updates left unconfirmed after stop(): ${api.pending()}`);
}
