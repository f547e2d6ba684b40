// Compose a runner by hand from its building blocks: the getUpdates supplier,
// a source with a speed/traffic balance, and a sink with its own error
// handling. This is what `run()` does for you.
//
//   deno run -A examples/custom_composition.ts

import { Bot } from "grammy";
import type { Update } from "grammy/types";
import { createConcurrentSink, createRunner, createSource, createUpdateSupplier } from "../mod.ts";
import { allHandled, connect } from "./_connect.ts";

const connection = await connect(200, 10);
const bot = new Bot(connection.token, connection.config);
bot.on("message", (ctx) => ctx.reply("composed by hand"));
await bot.init();

const supplier = createUpdateSupplier(bot, { fetch: { timeout: 30 } });
const source = createSource(supplier, { speedTrafficBalance: 0.5, maxDelayMilliseconds: 200 });
const sink = createConcurrentSink<Update>(
  { consume: (update) => bot.handleUpdate(update) },
  async (error) => console.error("update failed:", error),
  {
    concurrency: 20,
    // Tell the supplier which updates are done, so stop() confirms exactly those.
    onSettled: (update) => supplier.done(update.update_id),
  },
);
const handle = createRunner(source, sink);
handle.start();

await allHandled(connection, handle);
await handle.stop();
console.log(
  `${handle.stats().handled} updates, ${handle.stats().getUpdatesCalls} getUpdates calls`,
);
await connection.close();
