// The bot of the webhook demo and bench (examples/demo_webhook.ts,
// bench/webhook.ts): a grammY bot whose session, a counter per chat, lives in
// a Deno KV file shared by every process. Each message reads the session,
// works for `handlerMs`, bumps the counter and sends its update id back with
// sendMessage: the fake Bot API's `sentMessages` is then the record of what
// ran, in order, and a session counter below a chat's replies is a lost write.
// The KV queue tests' worker (tests/fixtures/kv_worker.ts) keeps the same
// session through `chatCounters`.

import { Bot, type Context, type MiddlewareFn, session, type SessionFlavor } from "grammy";

/** What a bot needs to know. */
export interface WebhookBotSpec {
  apiRoot: string;
  token: string;
  /** Work per update, in milliseconds. */
  handlerMs: number;
}

export type WebhookBotContext = Context & SessionFlavor<{ count: number }>;

/** Retries "database is locked", which a KV file shared by processes can answer. */
async function retryLocked<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt > 200 || !/locked|busy/i.test(String(error))) throw error;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

/**
 * The session middleware of these bots: a `{ count }` per chat, kept in `kv`
 * under `["session", chatId]` (read back by `sessionCounts`).
 */
export function chatCounters(kv: Deno.Kv): MiddlewareFn<WebhookBotContext> {
  return session({
    initial: () => ({ count: 0 }),
    getSessionKey: (ctx) => ctx.chat?.id.toString(),
    storage: {
      read: async (key) =>
        (await retryLocked(() => kv.get<{ count: number }>(["session", key]))).value ?? undefined,
      write: async (key, value) => void await retryLocked(() => kv.set(["session", key], value)),
      delete: async (key) => void await retryLocked(() => kv.delete(["session", key])),
    },
  });
}

/** The demo's bot on `kv`; pass `before` to add middleware (such as `sequentialize`) in front. */
export function webhookBot(
  spec: WebhookBotSpec,
  kv: Deno.Kv,
  before?: (bot: Bot<WebhookBotContext>) => void,
): Bot<WebhookBotContext> {
  const bot = new Bot<WebhookBotContext>(spec.token, { client: { apiRoot: spec.apiRoot } });
  before?.(bot);
  bot.use(chatCounters(kv));
  bot.on("message", async (ctx) => {
    if (spec.handlerMs > 0) await new Promise((resolve) => setTimeout(resolve, spec.handlerMs));
    ctx.session.count++;
    await ctx.api.sendMessage(ctx.chat.id, String(ctx.update.update_id));
  });
  bot.catch((error) => console.error(`Handler failed: ${String(error.error).slice(0, 300)}`));
  return bot;
}

/** The session counter of every chat in `kv`. */
export async function sessionCounts(kv: Deno.Kv): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for await (const entry of kv.list<{ count: number }>({ prefix: ["session"] })) {
    counts.set(String(entry.key[1]), entry.value.count);
  }
  return counts;
}
