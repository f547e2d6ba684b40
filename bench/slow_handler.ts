/**
 * `deno task --cwd bench slow`: what one slow handler does to each
 * confirmation mode. 6 000 messages over 300 chats (pushed up front), every
 * handler awaits 20 ms, except one early update whose handler takes 2 s. For
 * each mode it prints how many updates were handled while that one handler ran
 * (the first 1.5 s), the total time, and how many deliveries Telegram (the fake
 * Bot API) made of updates it had delivered before.
 *
 * ```sh
 * deno task --cwd bench slow
 * deno task --cwd bench slow --updates=3000 --slow-ms=1000
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Bot, type Context } from "grammy";
import { run, type RunnerOptions, sequentialize } from "@grammyx/runner";
import { memoryJournal } from "@grammyx/runner/journal";
import { FakeBotApi } from "@grammyx/runner/testing";

const { values } = parseArgs({
  options: {
    updates: { type: "string", default: "6000" },
    chats: { type: "string", default: "300" },
    "slow-ms": { type: "string", default: "2000" },
    "handler-ms": { type: "string", default: "20" },
  },
});
const updates = Number(values.updates);
const chats = Number(values.chats);
const slowMs = Number(values["slow-ms"]);
const handlerMs = Number(values["handler-ms"]);
const window = slowMs * 0.75;

interface Row {
  mode: string;
  handledInWindow: number;
  totalSeconds: number;
  redelivered: number;
}

async function trial(mode: string, runner: RunnerOptions): Promise<Row> {
  await using fake = await FakeBotApi.start();
  const ids = fake.pushMessages(updates, { chats });
  const slowId = ids[10]!;
  const bot = new Bot(fake.token, { client: { apiRoot: fake.apiRoot } });
  bot.use(sequentialize((ctx: Context) => ctx.chat?.id.toString()));
  let handled = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => done = resolve);
  bot.on("message", async (ctx) => {
    const ms = ctx.update.update_id === slowId ? slowMs : handlerMs;
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (++handled === updates) done();
  });
  const start = performance.now();
  const handle = run(bot, { runner: { ...runner, silent: true } });
  await new Promise((resolve) => setTimeout(resolve, window));
  const handledInWindow = handled;
  await all;
  const totalSeconds = (performance.now() - start) / 1000;
  await handle.stop();
  return { mode, handledInWindow, totalSeconds, redelivered: fake.stats.redelivered };
}

const rows = [
  await trial('"fetched" (default)', {}),
  await trial('"handled"', { confirm: "handled" }),
  await trial("journal (memoryJournal)", { journal: memoryJournal() }),
];
console.log(
  `${updates} updates over ${chats} chats, ${handlerMs} ms handlers, one of ${slowMs} ms\n`,
);
console.log(
  `| mode | handled in the first ${window / 1000} s | all handled after | re-deliveries |`,
);
console.log("| --- | --- | --- | --- |");
for (const row of rows) {
  console.log(
    `| ${row.mode} | ${row.handledInWindow} | ${
      row.totalSeconds.toFixed(1)
    } s | ${row.redelivered} |`,
  );
}
