// Sessions without races: `sequentialize` with the same key as the session,
// so two updates of one chat never read and write the session at once.
//
//   deno run -A examples/session.ts

import { Bot, type Context, session, type SessionFlavor } from "grammy";
import { run, sequentialize } from "../mod.ts";
import { allHandled, connect } from "./_connect.ts";

type MyContext = Context & SessionFlavor<{ messages: number }>;

const connection = await connect<MyContext>(60, 3);
const bot = new Bot<MyContext>(connection.token, connection.config);

// The same key function for both: per chat.
const chatKey = (ctx: Context) => ctx.chat?.id.toString();
bot.use(sequentialize(chatKey)); // first, before session
bot.use(session({ getSessionKey: chatKey, initial: () => ({ messages: 0 }) }));
bot.on("message", async (ctx) => {
  const seen = ctx.session.messages;
  await new Promise((resolve) => setTimeout(resolve, 5)); // slow work between read and write
  ctx.session.messages = seen + 1;
  await ctx.reply(`That is message ${ctx.session.messages} in this chat`);
});

const handle = run(bot, { sink: { concurrency: 50 } });
await allHandled(connection, handle);
await handle.stop();
const last = new Map<string | number, string>();
for (const message of connection.fake?.sentMessages ?? []) last.set(message.chat_id, message.text);
for (const [chat, text] of last) console.log(`chat ${chat}: ${text}`); // counts add up to 60
await connection.close();
