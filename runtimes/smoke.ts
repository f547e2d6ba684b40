// The smoke suite for Node 22+ and Bun: what a user of @grammyx/runner relies
// on, run against `grammy` from npm, through the package names a user writes
// (`@grammyx/runner`, `@grammyx/runner/testing`, ...). runtimes/run.sh builds
// the package and runs this file on each runtime; Deno's own suite is tests/.
//
// No test framework (none is shared by Node and Bun): each test is a function,
// run one after another, each under a time limit. The last line has the shape
// of deno test's summary, "ok | 7 passed | 0 failed (...)", so that .ci/run
// adds these counts to the total.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { Bot, type Context } from "grammy";
import { run, sequentialize } from "@grammyx/runner";
import { distribute, type WorkerFailure } from "@grammyx/runner/distribute";
import { FakeBotApi } from "@grammyx/runner/testing";

const runtime = typeof (globalThis as { Bun?: unknown }).Bun === "object"
  ? `bun ${process.versions.bun}`
  : typeof (globalThis as { Deno?: unknown }).Deno === "object"
  ? `deno ${process.versions.deno}`
  : `node ${process.version}`;
const quick = { runner: { fetch: { timeout: 1 } } } as const;
const byChat = (ctx: Context) => ctx.chat?.id.toString();
/** The worker module as @grammyjs/runner's README names it: `__dirname + "/worker"`. */
const WORKER = `${import.meta.dirname}/smoke_worker`;

const tests: [string, () => Promise<void>][] = [];
function test(name: string, body: () => Promise<void>): void {
  tests.push([name, body]);
}

/** Waits until `condition()` holds, checking every few ms, failing after `limit` ms. */
async function until(condition: () => boolean, limit: number, what: string): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > limit) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A promise that `open()` resolves, to hold handlers until the test lets them go. */
function gate(): { promise: Promise<void>; open: () => void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, open: () => resolve() };
}

function botFor(api: FakeBotApi): Bot {
  return new Bot(api.token, { client: { apiRoot: api.apiRoot } });
}

/** The worker's replies (see smoke_worker.ts), grouped by chat in the order the server got them. */
function repliesByChat(
  api: FakeBotApi,
): Map<number, { id: number; worker: string; overlap: boolean }[]> {
  const byChat = new Map<number, { id: number; worker: string; overlap: boolean }[]>();
  for (const { chat_id, text } of api.sentMessages) {
    const list = byChat.get(Number(chat_id)) ?? [];
    list.push(JSON.parse(text));
    byChat.set(Number(chat_id), list);
  }
  return byChat;
}

test("run() + sequentialize(): every update once, each chat in order, stop() and a new run() lose and repeat nothing", async () => {
  const api = await FakeBotApi.start({ seed: 11 });
  try {
    const bot = botFor(api);
    const seen: number[] = [];
    const perChat = new Map<number, number[]>();
    const busy = new Set<number>();
    let overlaps = 0;
    let peak = 0;
    bot.use(sequentialize(byChat));
    bot.on("message", async (ctx) => {
      const chat = ctx.chat.id;
      if (busy.has(chat)) overlaps++;
      busy.add(chat);
      peak = Math.max(peak, busy.size);
      await new Promise((resolve) => setTimeout(resolve, ctx.update.update_id % 4));
      seen.push(ctx.update.update_id);
      perChat.set(chat, [...(perChat.get(chat) ?? []), ctx.update.update_id]);
      busy.delete(chat);
    });
    const ids = api.pushMessages(600, { chats: 25 });

    let handle = run(bot, { ...quick, sink: { concurrency: 20 } });
    await until(() => seen.length >= 200, 20_000, "200 updates");
    const first = await handle.stop();
    assert.deepEqual(first.unfinished, [], "stop() waited for the updates in flight");
    handle = run(bot, { ...quick, sink: { concurrency: 20 } });
    await until(() => seen.length >= 600, 20_000, "600 updates");
    await handle.stop();

    assert.deepEqual(seen.toSorted((a, b) => a - b), ids, "every update exactly once");
    for (const [chat, order] of perChat) {
      assert.deepEqual(order, order.toSorted((a, b) => a - b), `chat ${chat} in update_id order`);
    }
    assert.equal(overlaps, 0, "no chat ran two updates at once");
    assert.ok(peak > 1, "different chats ran at once");
    assert.equal(api.pending(), 0, "stop() confirmed everything");
  } finally {
    await api.close();
  }
});

test("a hot chat does not delay the cold chats: they finish while its chain is blocked", async () => {
  const api = await FakeBotApi.start();
  try {
    const hot = gate();
    const done: number[] = [];
    const bot = botFor(api);
    bot.use(sequentialize(byChat));
    bot.on("message", async (ctx) => {
      if (ctx.chat.id === 1) await hot.promise;
      done.push(ctx.chat.id);
    });
    // 30 updates of the hot chat come first, then 20 cold chats.
    api.pushMessages(30, { chatOf: () => 1 });
    api.pushMessages(20, { chatOf: (index) => 100 + index });
    const handle = run(bot, { ...quick, sink: { concurrency: 4 } });

    await until(() => done.length >= 20, 10_000, "the 20 cold chats");
    assert.ok(done.every((chat) => chat >= 100), "only cold chats are done");
    const stats = handle.stats();
    assert.equal(stats.running, 1, "only the head of the hot chain holds a slot");
    assert.equal(stats.waitingForKey, 29);
    hot.open();
    await until(() => done.length >= 50, 10_000, "all 50 updates");
    await handle.stop();
    assert.equal(api.pending(), 0);
  } finally {
    await api.close();
  }
});

test("bad options are rejected at once, naming the option and the value", async () => {
  const api = await FakeBotApi.start();
  try {
    const bot = botFor(api);
    assert.throws(() => run(bot, { sink: { concurrency: 0 } }), {
      name: "RangeError",
      message: /'concurrency' must be a positive integer: current value is 0$/,
    });
    assert.throws(() => run(bot, { sink: { concurrency: Infinity } }), RangeError);
    assert.throws(() => run(bot, { runnr: {} } as never), {
      name: "TypeError",
      message: /'runnr' is not an option: did you mean 'runner'\?$/,
    });
    assert.throws(() => sequentialize("chat" as never), TypeError);
    assert.throws(() => distribute(WORKER, { count: 0 }), {
      name: "RangeError",
      message:
        "Cannot create distribute middleware as 'count' must be a positive integer: current value is 0",
    });
    assert.throws(() => distribute("./smoke_worker"), {
      name: "TypeError",
      message: /'specifier' must be an absolute URL .*current value is "\.\/smoke_worker"$/,
    });
    assert.throws(() => distribute(`${import.meta.dirname}/no_such_worker`), {
      name: "TypeError",
      message: /'specifier' must name a file/,
    });
    assert.equal(api.stats.requests.getUpdates ?? 0, 0, "nothing was sent");
  } finally {
    await api.close();
  }
});

test("distribute() over 2 workers (an absolute path without extension): each chat in order on one worker, stop() ends them", async () => {
  const api = await FakeBotApi.start({ seed: 5 });
  process.env.GRAMMYX_SMOKE_TOKEN = api.token;
  process.env.GRAMMYX_SMOKE_API_ROOT = api.apiRoot;
  try {
    const bot = botFor(api);
    bot.use(distribute(WORKER, { count: 2 }));
    const ids = api.pushMessages(300, { chats: 12 });
    const handle = run(bot, quick);
    await until(() => api.sentMessages.length >= 300, 30_000, "300 replies");
    await handle.stop();

    const byChat = repliesByChat(api);
    const handled = [...byChat.values()].flat().map((reply) => reply.id);
    assert.deepEqual(handled.toSorted((a, b) => a - b), ids, "every update exactly once");
    const workers = new Set<string>();
    for (const [chat, replies] of byChat) {
      const order = replies.map((reply) => reply.id);
      assert.deepEqual(order, order.toSorted((a, b) => a - b), `chat ${chat} in order`);
      assert.equal(new Set(replies.map((r) => r.worker)).size, 1, `chat ${chat} on one worker`);
      assert.ok(replies.every((reply) => !reply.overlap), `chat ${chat} never overlapped`);
      workers.add(replies[0]!.worker);
    }
    assert.equal(workers.size, 2, "the chats are spread over the 2 workers");
    assert.equal(api.pending(), 0);
  } finally {
    await api.close();
  }
});

for (const how of ["crash-throw", "crash-exit"]) {
  test(`distribute(): a worker that crashes (${how}) is replaced and its unfinished updates run again`, async () => {
    const api = await FakeBotApi.start({ seed: 9 });
    const dir = mkdtempSync(`${tmpdir()}/grammyx_smoke_`);
    process.env.GRAMMYX_SMOKE_TOKEN = api.token;
    process.env.GRAMMYX_SMOKE_API_ROOT = api.apiRoot;
    try {
      const failures: WorkerFailure[] = [];
      const bot = botFor(api);
      bot.use(distribute(new URL(`file://${WORKER}.ts`), {
        count: 2,
        onWorkerError: (failure) => void failures.push(failure),
      }));
      const ids = api.pushMessages(100, {
        chats: 6,
        text: (index) => (index === 50 ? `${how} ${dir}/crashed` : `message ${index}`),
      });
      const handle = run(bot, quick);
      await until(
        () => new Set(api.sentMessages.map(({ text }) => JSON.parse(text).id)).size >= 100,
        30_000,
        "100 updates handled",
      );
      await handle.stop();

      const byChat = repliesByChat(api);
      const handled = new Set([...byChat.values()].flat().map((reply) => reply.id));
      assert.deepEqual([...handled].toSorted((a, b) => a - b), ids, "every update at least once");
      for (const [chat, replies] of byChat) {
        const order = replies.map((reply) => reply.id);
        assert.deepEqual(order, order.toSorted((a, b) => a - b), `chat ${chat} in order`);
      }
      assert.equal(failures.length, 1, "one crash reported");
      const expected = how === "crash-throw"
        ? /^Uncaught Error: crash on purpose in bot<token>$/
        : /The worker called (process|Deno)\.exit\(1\)/; // Deno's process.exit() is Deno.exit()
      assert.match(failures[0]!.message, expected);
      assert.ok(failures[0]!.redispatched >= 1, "the crashing update was sent again");
      assert.equal(api.pending(), 0);
    } finally {
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

const started = Date.now();
let passed = 0;
let failed = 0;
for (const [name, body] of tests) {
  const start = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("Timed out after 60 s")), 60_000);
  });
  try {
    await Promise.race([body(), limit]);
    passed++;
    console.log(`${name} ... ok (${Date.now() - start}ms)`);
  } catch (error) {
    failed++;
    console.log(`${name} ... FAILED (${Date.now() - start}ms)`);
    console.log(String((error as Error)?.stack ?? error).replace(/^/gm, "    "));
  } finally {
    clearTimeout(timer);
  }
}
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(
  `${
    failed === 0 ? "ok" : "FAILED"
  } | ${passed} passed | ${failed} failed (${runtime}, ${seconds}s)`,
);
process.exitCode = failed === 0 ? 0 : 1;
