// The smallest bot on the runner: echo every text message.
//
//   BOT_TOKEN=123:abc deno task start     (real Telegram)
//   deno run -A examples/echo.ts          (fake Bot API, no token needed)

import { Bot } from "grammy";
import { run } from "../mod.ts";
import { allHandled, connect } from "./_connect.ts";

const connection = await connect();
const bot = new Bot(connection.token, connection.config);
bot.on("message:text", (ctx) => ctx.reply(ctx.message.text));
bot.catch((error) => console.error("Middleware error:", error.message));

const handle = run(bot);
await allHandled(connection, handle);
await handle.stop();
console.log(`Echoed ${connection.fake?.sentMessages.length} messages`);
await connection.close();
