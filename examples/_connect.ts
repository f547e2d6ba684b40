// Lets every example run two ways: against real Telegram when BOT_TOKEN is
// set, or else against the module's fake Bot API with a few pushed messages.

import type { BotConfig, Context } from "grammy";
import { FakeBotApi } from "../testing.ts";

/** Where an example's bot connects. */
export interface Connection<C extends Context> {
  token: string;
  config: BotConfig<C>;
  /** The fake server, when there is no BOT_TOKEN. */
  fake: FakeBotApi | undefined;
  /** Messages pushed to the fake server (0 on Telegram). */
  pushed: number;
  close(): Promise<void>;
}

/** Connects to Telegram (BOT_TOKEN) or to a fake Bot API with `messages` pushed over `chats`. */
export async function connect<C extends Context = Context>(
  messages = 20,
  chats = 4,
): Promise<Connection<C>> {
  const token = Deno.env.get("BOT_TOKEN");
  if (token) {
    return {
      token,
      config: {},
      fake: undefined,
      pushed: 0,
      close: () => Promise.resolve(),
    };
  }
  const fake = await FakeBotApi.start();
  fake.pushMessages(messages, { chats });
  console.log(
    `No BOT_TOKEN set: using a fake Bot API with ${messages} messages from ${chats} chats`,
  );
  return {
    token: fake.token,
    config: { client: { apiRoot: fake.apiRoot } },
    fake,
    pushed: messages,
    close: () => fake.close(),
  };
}

/**
 * On the fake server: resolves once the runner has finished every pushed
 * update. On Telegram: never (stop the bot with Ctrl+C).
 */
export async function allHandled<C extends Context>(
  connection: Connection<C>,
  handle: { stats(): { handled: number; failed: number; timedOut: number } },
): Promise<void> {
  if (connection.fake === undefined) return await new Promise(() => {});
  const done = () => {
    const { handled, failed, timedOut } = handle.stats();
    return handled + failed + timedOut;
  };
  while (done() < connection.pushed) await new Promise((resolve) => setTimeout(resolve, 20));
}
