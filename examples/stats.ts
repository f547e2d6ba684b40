// Log the runner's stats every second: throughput, in flight, waiting, lag,
// and the time of the last successful poll (for a stall watchdog).
//
//   deno run -A examples/stats.ts

import { Bot } from "grammy";
import { run } from "../mod.ts";
import { allHandled, connect } from "./_connect.ts";

const connection = await connect(5000, 200);
const bot = new Bot(connection.token, connection.config);
bot.on("message", () => new Promise((resolve) => setTimeout(resolve, 20)));

const handle = run(bot, { sink: { concurrency: 100 } });
const timer = setInterval(() => {
  const stats = handle.stats();
  const sincePoll = stats.lastPollAt === undefined
    ? "never"
    : `${Date.now() - stats.lastPollAt} ms ago`;
  console.log(
    `handled ${stats.handled}, running ${stats.running}, waiting ${
      stats.waitingForKey + stats.waitingForSlot
    }, ` +
      `lag ${stats.lag} ms, getUpdates ${stats.getUpdatesCalls} (failed ${stats.getUpdatesFailures}), last poll ${sincePoll}`,
  );
  if (stats.lastPollAt !== undefined && Date.now() - stats.lastPollAt > 120_000) {
    console.error("No successful poll for 2 minutes: is Telegram reachable?");
  }
}, 1000);

await allHandled(connection, handle);
clearInterval(timer);
await handle.stop();
console.log("final:", handle.stats());
await connection.close();
