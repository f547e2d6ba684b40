// Builds grammY bots wired to the fake Bot API, and records what they did.

import { Bot, type Context, session, type SessionFlavor } from "grammy";
import type { FakeBotApi } from "../testing.ts";
import { sequentialize } from "../mod.ts";

export type SessionContext = Context & SessionFlavor<{ count: number }>;

/** A bot that talks to `api` over real HTTP. */
export function botFor<C extends Context = Context>(api: FakeBotApi, token = api.token): Bot<C> {
  return new Bot<C>(token, { client: { apiRoot: api.apiRoot } });
}

/** Records handled update ids, per-chat order, overlap within a chat, and peak concurrency. */
export class Recorder {
  readonly handled = new Map<number, number>();
  readonly perChat = new Map<number, number[]>();
  readonly busyChats = new Set<number>();
  overlapsWithinChat = 0;
  running = 0;
  peak = 0;

  get total(): number {
    let sum = 0;
    for (const count of this.handled.values()) sum += count;
    return sum;
  }

  get duplicates(): number {
    let sum = 0;
    for (const count of this.handled.values()) if (count > 1) sum += count - 1;
    return sum;
  }

  async record(ctx: Context, work: () => Promise<void> | void): Promise<void> {
    const id = ctx.update.update_id;
    const chat = ctx.chat?.id ?? 0;
    if (this.busyChats.has(chat)) this.overlapsWithinChat++;
    this.busyChats.add(chat);
    this.peak = Math.max(this.peak, ++this.running);
    try {
      await work();
    } finally {
      this.running--;
      this.busyChats.delete(chat);
      this.handled.set(id, (this.handled.get(id) ?? 0) + 1);
      const list = this.perChat.get(chat) ?? [];
      list.push(id);
      this.perChat.set(chat, list);
    }
  }

  /** Every chat's ids are increasing. */
  inOrder(): boolean {
    for (const ids of this.perChat.values()) {
      for (let i = 1; i < ids.length; i++) if (ids[i]! <= ids[i - 1]!) return false;
    }
    return true;
  }
}

/** A bot with sequentialize by chat and a session counter per chat. */
export function sessionBot(api: FakeBotApi, recorder: Recorder, work: () => Promise<void> | void) {
  const bot = botFor<SessionContext>(api);
  const key = (ctx: Context) => ctx.chat?.id.toString();
  const counters = new Map<string, { count: number }>();
  bot.use(sequentialize(key));
  bot.use(session({
    initial: () => ({ count: 0 }),
    getSessionKey: key,
    storage: {
      read: async (k) => {
        await Promise.resolve();
        const value = counters.get(k);
        return value === undefined ? undefined : { ...value };
      },
      write: async (k, value) => {
        await Promise.resolve();
        counters.set(k, { ...value });
      },
      delete: async (k) => void counters.delete(k),
    },
  }));
  bot.on("message", (ctx) =>
    recorder.record(ctx, async () => {
      const before = ctx.session.count;
      await work();
      ctx.session.count = before + 1;
    }));
  return { bot, counters };
}
