// Graceful shutdown: on SIGINT or SIGTERM, stop fetching, let every update
// already taken finish (here: at most 2 s, as a process manager's kill window
// would allow), confirm them, and exit. What did not finish in time is split
// by what happens to it: `lost` updates no one sends again (the default
// "fetched" mode confirmed them with an earlier poll), so persist or log them;
// `redelivered` ones come again on the next start.
//
//   deno run -A examples/graceful_shutdown.ts     (then press Ctrl+C)

import { Bot } from "grammy";
import { run } from "../mod.ts";
import { connect } from "./_connect.ts";

const connection = await connect(1000, 50);
const bot = new Bot(connection.token, connection.config);
bot.on("message", async (ctx) => {
  // Slow handlers; one in a hundred hangs far past the kill window.
  const slow = ctx.update.update_id % 100 === 7 ? 60_000 : 100;
  await new Promise((resolve) => setTimeout(resolve, slow));
});

const handle = run(bot, { sink: { concurrency: 100 } });

async function shutDown(signal: string) {
  console.log(`${signal}: stopping, ${handle.size()} updates in flight`);
  const { unfinished, lost, redelivered } = await handle.stop({ timeout: 2_000 });
  const ids = (updates: { update_id: number }[]) => updates.map((u) => u.update_id).join(", ");
  console.log(`Stopped after handling ${handle.stats().handled} updates`);
  if (unfinished.length === 0) console.log("Every update taken finished: none lost, none repeated");
  if (redelivered.length > 0) console.log(`Telegram sends these again: ${ids(redelivered)}`);
  if (lost.length > 0) {
    // Persist them (a file, a queue, your database) to run them later; here: log them.
    await Deno.writeTextFile("unfinished_updates.json", JSON.stringify(lost)).catch(() => {});
    console.error(`Not finished, and no one sends them again (saved): ${ids(lost)}`);
  }
  await connection.close();
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", () => shutDown("SIGINT"));
Deno.addSignalListener("SIGTERM", () => shutDown("SIGTERM"));

// Without a real token, play the operator: send ourselves SIGTERM mid-load.
if (connection.fake !== undefined) {
  setTimeout(() => Deno.kill(Deno.pid, "SIGTERM"), 500);
}
