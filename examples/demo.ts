/**
 * `deno task demo`: the runner at work on an embedded fake Telegram, no
 * token needed. It pushes a realistic load (many chats, a few hot ones), runs
 * a bot with `sequentialize` + `session` whose handlers reply through the
 * fake Bot API, shows live progress, and verifies at the end that every
 * update was handled exactly once and every chat's session counter is right.
 *
 * Flags (`--help` lists them): --updates N (50000) --chats N (5000) --hot N (5)
 * --concurrency N (500) --latency MS (3) --seed N (1); `--updates=N` works too.
 */

import { Bot, type Context, session, type SessionFlavor } from "grammy";
import { run, sequentialize } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";
import { DEMO_USAGE, type DemoFlags, type DemoSettings, parseDemoFlags } from "./_demo_flags.ts";

type DemoContext = Context & SessionFlavor<{ count: number }>;

async function main(settings: DemoSettings): Promise<boolean> {
  await using api = await FakeBotApi.start({
    seed: settings.seed,
    sendMessageLatency: settings.latency,
  });
  const bot = new Bot<DemoContext>(api.token, { client: { apiRoot: api.apiRoot } });

  // What the bot did, for the verification at the end.
  const handled = new Map<number, number>();
  const perChat = new Map<number, number[]>();
  const counters = new Map<string, { count: number }>();
  const latencies: number[] = [];
  let errors = 0;

  const chatKey = (ctx: Context) => ctx.chat?.id.toString();
  bot.use(sequentialize(chatKey));
  bot.use(session({
    getSessionKey: chatKey,
    initial: () => ({ count: 0 }),
    storage: {
      read: (key) => Promise.resolve(counters.get(key)),
      write: (key, value) => void counters.set(key, { ...value }),
      delete: (key) => void counters.delete(key),
    },
  }));
  bot.on("message", async (ctx) => {
    ctx.session.count++;
    await ctx.reply(`message ${ctx.session.count} in this chat`);
    const id = ctx.update.update_id;
    handled.set(id, (handled.get(id) ?? 0) + 1);
    const list = perChat.get(ctx.chat.id) ?? [];
    list.push(id);
    perChat.set(ctx.chat.id, list);
    latencies.push(Date.now() - (api.enqueuedAt(id) ?? Date.now()));
  });
  bot.catch(() => void errors++);

  // A few hot chats get 2 % of the traffic (200 updates each by default).
  const hotShare = settings.hot > 0 ? 0.02 : 0;
  const ids = api.pushMessages(settings.updates, {
    chatOf: (_, random) =>
      random() < hotShare
        ? 1 + Math.floor(random() * settings.hot)
        : 1 + settings.hot + Math.floor(random() * settings.chats),
  });

  console.log(
    `Pushed ${ids.length} updates over ${settings.chats + settings.hot} chats ` +
      `(${settings.hot} hot); concurrency ${settings.concurrency}, reply latency ${settings.latency} ms`,
  );
  const started = performance.now();
  const handle = run(bot, {
    sink: { concurrency: settings.concurrency },
    runner: { fetch: { timeout: 1 } },
  });
  const progress = setInterval(
    () => printProgress(handle.stats(), started, false),
    Deno.stdout.isTerminal() ? 200 : 1000,
  );
  try {
    while (handled.size + errors < ids.length) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (performance.now() - started > 120_000) break;
    }
  } finally {
    clearInterval(progress);
  }
  await handle.stop();
  const seconds = (performance.now() - started) / 1000;
  printProgress(handle.stats(), started, true);

  // Verification.
  const problems: string[] = [];
  const missing = ids.filter((id) => !handled.has(id));
  const twice = [...handled].filter(([, count]) => count > 1).map(([id]) => id);
  if (missing.length > 0) {
    problems.push(`${missing.length} updates never handled (e.g. ${missing.slice(0, 5)})`);
  }
  if (twice.length > 0) {
    problems.push(`${twice.length} updates handled more than once (e.g. ${twice.slice(0, 5)})`);
  }
  if (errors > 0) problems.push(`${errors} middleware errors`);
  for (const [chat, list] of perChat) {
    if (list.some((id, i) => i > 0 && id < list[i - 1]!)) {
      problems.push(`chat ${chat} ran out of order`);
    }
    const count = counters.get(String(chat))?.count;
    if (count !== list.length) {
      problems.push(`chat ${chat}: session counter ${count}, updates ${list.length}`);
    }
  }
  if (api.pending() !== 0) problems.push(`${api.pending()} updates left unconfirmed at Telegram`);
  if (api.sentMessages.length !== ids.length) {
    problems.push(`${api.sentMessages.length} replies sent for ${ids.length} updates`);
  }

  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  console.log(
    [
      "",
      `Handled   ${handled.size} updates in ${seconds.toFixed(2)} s (${
        Math.round(handled.size / seconds)
      } updates/s)`,
      `Latency   p50 ${at(0.5)} ms, p99 ${
        at(0.99)
      } ms (push to handler end; all were pushed at once)`,
      `Replies   ${api.sentMessages.length} sendMessage calls`,
      `Chats     ${perChat.size}, every session counter checked`,
      problems.length === 0
        ? "PASS      every update handled exactly once, in order per chat, all confirmed"
        : `FAIL      ${problems.slice(0, 10).join("; ")}`,
    ].join("\n"),
  );
  return problems.length === 0;
}

function printProgress(
  stats: ReturnType<ReturnType<typeof run>["stats"]>,
  started: number,
  last: boolean,
) {
  const seconds = (performance.now() - started) / 1000;
  const done = stats.handled + stats.failed + stats.timedOut;
  const line = `processed ${done}  rate ${Math.round(done / Math.max(seconds, 0.001))}/s  ` +
    `in flight ${stats.running}  waiting for key ${stats.waitingForKey}  ` +
    `waiting for slot ${stats.waitingForSlot}  errors ${stats.failed}`;
  if (Deno.stdout.isTerminal()) {
    Deno.stdout.writeSync(new TextEncoder().encode(`\r\x1b[2K${line}${last ? "\n" : ""}`));
  } else {
    console.log(line);
  }
}

if (import.meta.main) {
  let flags: DemoFlags;
  try {
    flags = parseDemoFlags(Deno.args);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${DEMO_USAGE}`);
    Deno.exit(2);
  }
  if (flags.help) {
    console.log(DEMO_USAGE);
  } else {
    const passed = await main(flags.settings);
    Deno.exit(passed ? 0 : 1);
  }
}
