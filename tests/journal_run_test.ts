// run() with a journal against the fake Bot API: restarts and crash leftovers.

import assert from "node:assert/strict";
import type { Context } from "grammy";
import type { Update } from "grammy/types";
import { run, sequentialize } from "../mod.ts";
import { kvJournal, memoryJournal, type UpdateJournal } from "../journal.ts";
import { FakeBotApi } from "../testing.ts";
import { botFor, Recorder } from "./_bot.ts";
import { random, sleep, until } from "./_helpers.ts";

const quick = { fetch: { timeout: 1 } } as const;

/** A bot ordered by chat whose handler takes 1–10 ms (seeded); `entered` lists ids as they arrive. */
function journalBot(api: FakeBotApi, recorder: Recorder, seed: number, entered: number[] = []) {
  const rng = random(seed);
  const bot = botFor(api);
  bot.use((ctx, next) => {
    entered.push(ctx.update.update_id);
    return next();
  });
  bot.use(sequentialize((ctx: Context) => ctx.chat?.id.toString()));
  bot.on("message", (ctx) => recorder.record(ctx, () => sleep(1 + Math.floor(rng() * 10))));
  return bot;
}

function sorted(ids: Iterable<number>): number[] {
  return [...ids].toSorted((a, b) => a - b);
}

Deno.test("a stop under load and a restart with the same journal run each update exactly once", async (t) => {
  const kinds: Array<[string, () => Promise<{ journal: UpdateJournal<Update>; close(): void }>]> = [
    ["memoryJournal", () => Promise.resolve({ journal: memoryJournal(), close() {} })],
    ["kvJournal", async () => {
      const kv = await Deno.openKv(":memory:");
      return { journal: kvJournal(kv), close: () => kv.close() };
    }],
  ];
  for (const [name, open] of kinds) {
    await t.step(name, async () => {
      const { journal, close } = await open();
      try {
        await using api = await FakeBotApi.start({ seed: 3 });
        const recorder = new Recorder();
        const ids = api.pushMessages(2_000, { chats: 200 });
        const options = { runner: { ...quick, journal }, sink: { concurrency: 50 } };

        const first = run(journalBot(api, recorder, 1), options);
        await until(() => recorder.total >= 700, 20_000, "700 updates");
        assert.ok(recorder.running > 0, "the stop must happen under load");
        await first.stop();
        assert.deepEqual(
          (await journal.open()).unfinished,
          [],
          "stop() recorded every update as finished",
        );

        const second = run(journalBot(api, recorder, 2), options);
        await until(() => recorder.total >= 2_000, 20_000, "the rest");
        await second.stop();
        assert.equal(recorder.duplicates, 0, "no update handled twice");
        assert.deepEqual(sorted(recorder.handled.keys()), ids, "no update lost");
        assert.ok(recorder.inOrder(), "each chat in order");
        assert.equal(api.pending(), 0);
        assert.deepEqual(await journal.open(), { unfinished: [], lastId: 2_000 });
      } finally {
        close();
      }
    });
  }
});

/** Has the fake deliver (not confirm) its first `count` updates, as a crashed bot had. */
async function takeFromTelegram(api: FakeBotApi, count: number): Promise<Update[]> {
  return await botFor(api).api.getUpdates({ limit: count, timeout: 0 });
}

/** Confirms every update below `offset` at the fake, as a crashed bot's next getUpdates had. */
async function confirmAtTelegram(api: FakeBotApi, offset: number): Promise<void> {
  await botFor(api).api.getUpdates({ offset, limit: 1, timeout: 0 });
}

Deno.test("updates a crash left unfinished run first, each chat in order", async () => {
  await using api = await FakeBotApi.start({ seed: 5 });
  const ids = api.pushMessages(300, { chats: 6 });
  // The crashed bot had stored 1..60 and confirmed them with its next
  // getUpdates, and finished none of them: only the journal still has them.
  const journal = memoryJournal();
  await journal.store(await takeFromTelegram(api, 60));
  await confirmAtTelegram(api, 61);

  const recorder = new Recorder();
  const entered: number[] = [];
  const handle = run(journalBot(api, recorder, 7, entered), { runner: { ...quick, journal } });
  await until(() => recorder.total >= 300, 20_000, "300 updates");
  await handle.stop();

  assert.deepEqual(sorted(entered.slice(0, 60)), ids.slice(0, 60), "the 60 left over came first");
  assert.equal(recorder.duplicates, 0);
  assert.deepEqual(sorted(recorder.handled.keys()), ids);
  assert.ok(recorder.inOrder(), "each chat in update_id order");
  assert.equal(journal.size, 0);
  assert.equal(api.pending(), 0);
});

Deno.test("updates recorded as finished before a crash are not run again though Telegram still holds them", async () => {
  await using api = await FakeBotApi.start();
  const ids = api.pushMessages(50, { chats: 3 });
  // The crashed bot had stored and finished 1..30; its confirming getUpdates never went out.
  const journal = memoryJournal();
  await journal.store(await takeFromTelegram(api, 30));
  await journal.finish(ids.slice(0, 30));

  const recorder = new Recorder();
  const handle = run(journalBot(api, recorder, 3), { runner: { ...quick, journal } });
  await until(() => recorder.total >= 20, 20_000, "20 updates");
  await handle.stop();

  assert.deepEqual(sorted(recorder.handled.keys()), ids.slice(30));
  assert.equal(recorder.duplicates, 0);
  assert.equal(api.pending(), 0);
});
