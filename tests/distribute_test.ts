import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { BotError, Context } from "grammy";
import { run } from "../mod.ts";
import { distribute, type WorkerFailure } from "../distribute.ts";
import { type DoneMessage, type InitMessage, laneOf, type UpdateMessage } from "../_pool.ts";
import { FakeBotApi } from "../testing.ts";
import type { Outcome } from "./fixtures/broken_worker_bot.ts";
import { botFor } from "./_bot.ts";
import { isPending, until } from "./_helpers.ts";

const WORKER = new URL("./fixtures/chat_worker.ts", import.meta.url);
const WORKER_DIR = fileURLToPath(new URL("./fixtures", import.meta.url));
const quick = { runner: { fetch: { timeout: 1 } } } as const;

/** What the fixture worker sends for each message it handled. */
interface Reply {
  id: number;
  worker: string;
  overlap: boolean;
  peak: number;
}

/**
 * Counts the Web Workers created while it is in use and which of them were
 * terminated, by swapping the global `Worker` for a subclass.
 */
function trackWorkers(): { created: number; live: () => number; urls: string[] } & Disposable {
  const original = globalThis.Worker;
  const live = new Set<Worker>();
  const urls: string[] = [];
  let created = 0;
  class TrackedWorker extends original {
    constructor(specifier: string | URL, options?: WorkerOptions) {
      super(specifier, options);
      created++;
      urls.push(String(specifier));
      live.add(this);
    }
    override terminate(): void {
      live.delete(this);
      super.terminate();
    }
  }
  globalThis.Worker = TrackedWorker;
  return {
    get created() {
      return created;
    },
    live: () => live.size,
    urls,
    [Symbol.dispose]: () => void (globalThis.Worker = original),
  };
}

/** Points the fixture worker at `api`; undone on dispose. */
function configureWorkers(api: FakeBotApi, settings: { maxDelay?: number } = {}): Disposable {
  const values: Record<string, string> = {
    GRAMMYX_TEST_API_ROOT: api.apiRoot,
    GRAMMYX_TEST_TOKEN: api.token,
    GRAMMYX_TEST_MAX_DELAY: String(settings.maxDelay ?? 0),
  };
  for (const [name, value] of Object.entries(values)) Deno.env.set(name, value);
  return { [Symbol.dispose]: () => Object.keys(values).forEach((name) => Deno.env.delete(name)) };
}

/** The fixture's replies, grouped by chat in the order the server got them. */
function repliesByChat(api: FakeBotApi): Map<number, Reply[]> {
  const byChat = new Map<number, Reply[]>();
  for (const { chat_id, text } of api.sentMessages) {
    if (!text.startsWith("{")) continue;
    const list = byChat.get(Number(chat_id)) ?? [];
    list.push(JSON.parse(text));
    byChat.set(Number(chat_id), list);
  }
  return byChat;
}

/**
 * Runs `count` messages over `chats` chats through `distribute()` on 2
 * workers until every one has a reply; the worker given the middle message
 * crashes once, the way `how` names (the fixture's `crash-throw`,
 * `crash-close`, `crash-exit`).
 */
async function runWithOneCrash(
  api: FakeBotApi,
  count: number,
  chats: number,
  how: string,
): Promise<{
  ids: number[];
  /** The ids that got a reply, sorted. */
  handled: number[];
  byChat: Map<number, Reply[]>;
  failures: WorkerFailure[];
}> {
  using _settings = configureWorkers(api, { maxDelay: 2 });
  const marker = `GRAMMYX_TEST_CRASHED_${crypto.randomUUID().replaceAll("-", "_")}`;
  const failures: WorkerFailure[] = [];
  const bot = botFor(api);
  bot.use(
    distribute(WORKER, { count: 2, onWorkerError: (failure) => void failures.push(failure) }),
  );
  const crashAt = Math.floor(count / 2);
  const ids = api.pushMessages(count, {
    chats,
    text: (index) => index === crashAt ? `${how} ${marker}` : `message ${index}`,
  });
  const handle = run(bot, quick);
  try {
    await until(
      () => new Set(api.sentMessages.map(({ text }) => text)).size >= count,
      30_000,
      `${count} replies`,
    );
  } finally {
    await handle.stop();
    Deno.env.delete(marker);
  }
  const byChat = repliesByChat(api);
  const handled = new Set([...byChat.values()].flat().map((reply) => reply.id));
  return { ids, handled: [...handled].toSorted((a, b) => a - b), byChat, failures };
}

function replyCount(api: FakeBotApi): number {
  return api.sentMessages.filter(({ text }) => text.startsWith("{")).length;
}

Deno.test("distribute() keeps each chat in order on one worker: 2 000 updates over 50 chats, 3 workers", async () => {
  using workers = trackWorkers();
  await using api = await FakeBotApi.start({ seed: 3 });
  using _settings = configureWorkers(api, { maxDelay: 3 });
  const bot = botFor(api);
  bot.use(distribute(WORKER, { count: 3 }));
  const ids = api.pushMessages(2_000, { chats: 50 });

  const handle = run(bot, quick);
  await until(() => replyCount(api) >= 2_000, 60_000, "2 000 replies");
  await handle.stop();

  const byChat = repliesByChat(api);
  const handled = [...byChat.values()].flat().map((reply) => reply.id);
  assert.deepEqual(handled.toSorted((a, b) => a - b), ids, "every update handled exactly once");
  const usedWorkers = new Set<string>();
  for (const [chat, replies] of byChat) {
    const order = replies.map((reply) => reply.id);
    assert.deepEqual(order, order.toSorted((a, b) => a - b), `chat ${chat} in update_id order`);
    assert.equal(
      new Set(replies.map((reply) => reply.worker)).size,
      1,
      `chat ${chat} stays on one worker`,
    );
    assert.ok(
      replies.every((reply) => !reply.overlap),
      `chat ${chat} never ran two updates at once`,
    );
    usedWorkers.add(replies[0]!.worker);
  }
  assert.equal(usedWorkers.size, 3, "the chats are spread over the 3 workers");
  assert.ok(
    [...byChat.values()].flat().some((reply) => reply.peak > 1),
    "different chats overlap in a worker",
  );
  assert.equal(api.pending(), 0, "stop() confirmed everything");
  assert.equal(workers.created, 3);
  assert.equal(workers.live(), 0, "stop() terminated every worker");
});

Deno.test("a busy chat does not hold the runner's slots while its updates wait for their turn", async () => {
  using workers = trackWorkers();
  await using api = await FakeBotApi.start();
  using _settings = configureWorkers(api, { maxDelay: 4 });
  const bot = botFor(api);
  bot.use(distribute(WORKER, { count: 2 }));
  const busy = api.pushMessages(40, { chatOf: () => 1 });
  const others = api.pushMessages(8, { chatOf: (index) => index + 2 });

  const handle = run(bot, { ...quick, sink: { concurrency: 3 } });
  await until(() => replyCount(api) >= 48, 20_000, "48 replies");
  await handle.stop();

  const order = api.sentMessages.map(({ text }) => (JSON.parse(text) as Reply).id);
  const lastOther = Math.max(...others.map((id) => order.indexOf(id)));
  const busyBefore = order.slice(0, lastOther).filter((id) => busy.includes(id)).length;
  assert.ok(
    busyBefore < 20,
    `the other chats waited for ${busyBefore} of the busy chat's 40 updates`,
  );
  assert.deepEqual(order.filter((id) => busy.includes(id)), busy, "the busy chat stayed in order");
  assert.equal(workers.live(), 0);
});

Deno.test("a BotWorker runs the updates of one key in order and those of different keys at once", async () => {
  await using api = await FakeBotApi.start();
  using _settings = configureWorkers(api, { maxDelay: 3 });
  const worker = new Worker(WORKER, { type: "module" });
  try {
    const done: DoneMessage[] = [];
    worker.onmessage = (event: MessageEvent<DoneMessage>) => void done.push(event.data);
    const me = { id: 123456, is_bot: true, first_name: "Fake bot", username: "fake_bot" };
    worker.postMessage({ type: "init", me } satisfies InitMessage);
    for (let id = 1; id <= 40; id++) {
      const chat = { id: 1 + (id % 2), type: "private", first_name: "User" };
      const message = {
        message_id: id,
        date: 0,
        chat,
        from: { id: chat.id, is_bot: false, first_name: "User" },
        text: "hi",
      };
      // All 40 are sent at once: the worker itself keeps each key in order.
      worker.postMessage(
        {
          type: "update",
          job: id,
          key: String(chat.id),
          update: { update_id: id, message },
        } satisfies UpdateMessage,
      );
    }
    await until(() => done.length === 40, 10_000, "40 done messages");
    assert.ok(done.every((message) => message.error === undefined));
    for (const [chat, replies] of repliesByChat(api)) {
      const order = replies.map((reply) => reply.id);
      assert.deepEqual(order, order.toSorted((a, b) => a - b), `chat ${chat} in order`);
      assert.ok(
        replies.every((reply) => !reply.overlap),
        `chat ${chat} never ran two updates at once`,
      );
    }
    assert.ok(
      [...repliesByChat(api).values()].flat().some((reply) => reply.peak > 1),
      "the two keys overlapped",
    );
  } finally {
    worker.terminate();
  }
});

Deno.test("distribute() routes a key to the same lane, and spreads keys over the lanes", () => {
  for (const key of ["1", "-1001234567890", "update 17", "ключ"]) {
    assert.equal(laneOf(key, 3), laneOf(key, 3));
  }
  for (const count of [2, 3, 7]) {
    const sizes = new Array<number>(count).fill(0);
    for (let chat = 1; chat <= 7_000; chat++) sizes[laneOf(String(chat), count)]!++;
    for (const size of sizes) {
      assert.ok(
        Math.abs(size - 7_000 / count) < 0.1 * 7_000 / count,
        `lanes of ${count}: ${sizes}`,
      );
    }
  }
});

Deno.test("a worker that crashes is replaced and its unfinished updates run again", async (t) => {
  for (const how of ["crash-throw", "crash-close", "crash-exit"]) {
    await t.step(how, async () => {
      using workers = trackWorkers();
      await using api = await FakeBotApi.start({ seed: 5 });
      const { ids, handled, byChat, failures } = await runWithOneCrash(api, 300, 20, how);
      assert.deepEqual(handled, ids, "every update handled at least once");
      for (const [chat, replies] of byChat) {
        const order = replies.map((reply) => reply.id);
        assert.deepEqual(
          order,
          order.toSorted((a, b) => a - b),
          `chat ${chat} in order, repeats adjacent`,
        );
      }
      assert.equal(failures.length, 1, "one crash reported");
      const [failure] = failures;
      assert.ok(failure!.redispatched >= 1, "the crashing update was sent again");
      assert.equal(failure!.abandoned, 0);
      const expected = {
        "crash-throw": /crash on purpose/,
        "crash-close": /closed itself/,
        "crash-exit": /Deno\.exit\(1\)/,
      };
      assert.match(failure!.message, expected[how as keyof typeof expected]);
      assert.ok(!failure!.message.includes(api.token), failure!.message);
      assert.equal(workers.created, 3, "two workers and one replacement");
      assert.equal(workers.live(), 0);
      assert.equal(api.pending(), 0);
    });
  }
});

Deno.test("updates are given up after 3 workers crashed running them, and reach the error handler", async () => {
  await using api = await FakeBotApi.start();
  const ids = api.pushMessages(2, { chats: 2 });
  // The bot runs in a child process: Deno prints the uncaught error of a
  // worker module that fails while loading from the worker thread itself,
  // whatever the main thread's error handler does, so it is captured there.
  const child = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      new URL("./fixtures/broken_worker_bot.ts", import.meta.url).pathname,
      api.apiRoot,
      api.token,
      String(ids.length),
    ],
    cwd: new URL("..", import.meta.url),
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(child.stderr);
  assert.equal(child.code, 0, stderr);
  const outcome: Outcome = JSON.parse(new TextDecoder().decode(child.stdout));

  assert.deepEqual(outcome.caught.map(([id]) => id).toSorted((a, b) => a - b), ids);
  for (const [, error] of outcome.caught) {
    assert.match(error, /given up after 3 workers crashed running it: .*broken worker module/);
  }
  assert.deepEqual(
    outcome.failures.map((failure) => [failure.redispatched, failure.abandoned]),
    [[2, 0], [2, 0], [0, 2]],
    "three crashes, one report each",
  );
  assert.equal(outcome.failed, 2);
  assert.equal(outcome.created, 3);
  assert.equal(outcome.live, 0);
  const printed = stderr.match(/Uncaught \(in worker "grammyx-worker-0"\).*broken worker module/g);
  assert.equal(printed?.length, 3, "what Deno printed for each crash, captured");
});

Deno.test("stop() waits for an update running in a worker, then terminates every worker", async () => {
  using workers = trackWorkers();
  await using api = await FakeBotApi.start();
  using _settings = configureWorkers(api);
  const dir = await Deno.makeTempDir({ prefix: "grammyx_gate_" });
  try {
    const gate = `${dir}/open`;
    const bot = botFor(api);
    bot.use(distribute(WORKER, { count: 2 }));
    const [first, gated] = api.pushMessages(2, {
      chatOf: (index) => index + 1,
      text: (index) => (index === 0 ? "hello" : `gate ${gate}`),
    });

    const handle = run(bot, quick);
    await until(
      () => api.sentMessages.some(({ text }) => text === `started ${gated}`),
      10_000,
      "the gated update",
    );
    const stopping = handle.stop();
    assert.ok(await isPending(stopping), "stop() waits for the gated update");
    assert.equal(workers.live(), workers.created, "no worker terminated while an update runs");

    await Deno.writeTextFile(gate, "");
    await stopping;
    const handled = [...repliesByChat(api).values()].flat().map((reply) => reply.id);
    assert.deepEqual(
      handled.toSorted((a, b) => a - b),
      [first, gated],
      "the gated update finished before stop() resolved",
    );
    assert.equal(workers.live(), 0, "stop() terminated every worker");
    assert.equal(api.pending(), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stop() with a deadline terminates the workers, and updates still waiting start no new ones", async () => {
  using workers = trackWorkers();
  await using api = await FakeBotApi.start();
  using _settings = configureWorkers(api);
  const dir = await Deno.makeTempDir({ prefix: "grammyx_gate_" });
  try {
    const bot = botFor(api);
    const caught: string[] = [];
    bot.catch((error) => void caught.push(String(error.error)));
    bot.use(distribute(WORKER, { count: 1 }));
    const [gated, ...waiting] = api.pushMessages(4, {
      chatOf: () => 1,
      text: (index) => (index === 0 ? `gate ${dir}/never` : "hello"),
    });

    const handle = run(bot, quick);
    await until(
      () => api.sentMessages.some(({ text }) => text === `started ${gated}`),
      10_000,
      "the gated update",
    );
    const { unfinished } = await handle.stop({ timeout: 20 });
    assert.deepEqual(unfinished.map((update) => update.update_id), [gated, ...waiting]);
    await until(() => caught.length === 4, 10_000, "the four unfinished updates to fail");
    assert.match(
      caught[0]!,
      new RegExp(`Update ${gated} was not finished when its worker pool was closed`),
    );
    for (const error of caught.slice(1)) assert.match(error, /as its worker pool was closed/);
    assert.equal(workers.created, 1, "no new worker for the updates that waited");
    assert.equal(workers.live(), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a restarted runner gets new workers from the same middleware", async () => {
  using workers = trackWorkers();
  await using api = await FakeBotApi.start();
  using _settings = configureWorkers(api);
  const bot = botFor(api);
  bot.use(distribute(WORKER, { count: 1 }));
  api.pushMessages(5, { chats: 2 });
  let handle = run(bot, quick);
  await until(() => replyCount(api) >= 5, 10_000, "5 replies");
  await handle.stop();
  assert.equal(workers.live(), 0);

  api.pushMessages(5, { chats: 2 });
  handle = run(bot, quick);
  await until(() => replyCount(api) >= 10, 10_000, "10 replies");
  await handle.stop();
  const replies = [...repliesByChat(api).values()].flat();
  assert.equal(new Set(replies.map((reply) => reply.worker)).size, 2, "one worker per run");
  assert.equal(workers.created, 2);
  assert.equal(workers.live(), 0);
});

Deno.test("an error no handler in the worker took reaches the main bot's error handler, without the token", async () => {
  using workers = trackWorkers();
  await using api = await FakeBotApi.start({
    token: "987654:SECRET-token-value-abcdefghijklmnopqrstuvwxyz",
  });
  using _settings = configureWorkers(api);
  const bot = botFor(api);
  const caught: BotError<Context>[] = [];
  bot.catch((error) => void caught.push(error));
  bot.use(distribute(WORKER, { count: 1 }));
  const [failing, fine] = api.pushMessages(2, {
    chatOf: (index) => index + 1,
    text: (index) => (index === 0 ? "fail" : "ok"),
  });

  const handle = run(bot, quick);
  await until(
    () => caught.length === 1 && replyCount(api) === 1,
    10_000,
    "one error and one reply",
  );
  await handle.stop();

  const [error] = caught;
  assert.equal(error!.ctx.update.update_id, failing);
  assert.ok(error!.error instanceof Error);
  assert.match(
    error!.error.message,
    new RegExp(`^Update ${failing} failed in worker 0: .*failing on purpose`),
  );
  assert.ok(!error!.error.message.includes("SECRET"), error!.error.message);
  assert.deepEqual([...repliesByChat(api).values()].flat().map((reply) => reply.id), [fine]);
  assert.equal(handle.stats().failed, 1);
  assert.equal(workers.live(), 0);
});

Deno.test("distribute() works without run(): close() ends its threads and the next update starts new ones", async () => {
  using workers = trackWorkers();
  await using api = await FakeBotApi.start();
  using _settings = configureWorkers(api);
  const bot = botFor(api);
  const middleware = distribute(WORKER, { count: 2 });
  bot.use(middleware);
  await bot.init();
  const [first, second] = api.pushMessages(2, { chatOf: (index) => index + 1 });
  const updates = await bot.api.getUpdates();

  await bot.handleUpdate(updates[0]!);
  await middleware.close();
  assert.equal(workers.live(), 0);
  await middleware.close(); // closing twice is fine

  {
    await using _again = middleware;
    await bot.handleUpdate(updates[1]!);
    assert.ok(workers.live() >= 1);
  }
  assert.equal(workers.live(), 0, "await using closed the new threads");
  const replies = [...repliesByChat(api).values()].flat();
  assert.deepEqual(replies.map((reply) => reply.id), [first, second]);
  assert.notEqual(replies[0]!.worker, replies[1]!.worker, "the second update ran in a new worker");
});

Deno.test("distribute() takes the keys sequentialize() takes and rejects any other key before a thread starts", async (t) => {
  await t.step("numbers, bigints and null type-check as keys", async () => {
    await using _byChat = distribute<Context>(WORKER, { key: (ctx) => ctx.chat?.id ?? null });
    await using _byUser = distribute<Context>(WORKER, { key: (ctx) => BigInt(ctx.from?.id ?? 0) });
  });
  const wrong: [string, unknown, RegExp][] = [
    ["an object", { id: 7 }, /returned an object: .*ctx\.chat\?\.id, not ctx\.chat$/],
    ["an array", ["7"], /returned an array: /],
    ["true", true, /returned true: /],
  ];
  for (const [name, key, message] of wrong) {
    await t.step(name, async () => {
      using workers = trackWorkers();
      await using middleware = distribute(WORKER, { count: 1, key: () => key as never });
      await assert.rejects(middleware({ update: { update_id: 1 } }), {
        name: "TypeError",
        message: new RegExp(`^distribute\\(\\) key function ${message.source}`),
      });
      assert.equal(workers.created, 0);
    });
  }
});

Deno.test("distribute() rejects bad options when it is created", async (t) => {
  const cases: [string, () => unknown, string, RegExp][] = [
    [
      "count 0",
      () => distribute(WORKER, { count: 0 }),
      "RangeError",
      /^Cannot create distribute middleware as 'count' must be a positive integer: current value is 0$/,
    ],
    [
      "count 1.5",
      () => distribute(WORKER, { count: 1.5 }),
      "RangeError",
      /'count' must be a positive integer: current value is 1.5/,
    ],
    [
      "count '2'",
      () => distribute(WORKER, { count: "2" as never }),
      "TypeError",
      /'count' must be a positive integer: current value is "2"/,
    ],
    [
      "key not a function",
      () => distribute(WORKER, { key: "chat" as never }),
      "TypeError",
      /'key' must be a function: current value is "chat"/,
    ],
    [
      "onWorkerError not a function",
      () => distribute(WORKER, { onWorkerError: 1 as never }),
      "TypeError",
      /'onWorkerError' must be a function: current value is 1/,
    ],
    [
      "options not an object",
      () => distribute(WORKER, 3 as never),
      "TypeError",
      /'options' must be an object: current value is 3/,
    ],
    [
      "a misspelt option",
      () => distribute(WORKER, { cuont: 2 } as never),
      "TypeError",
      /^Cannot create distribute middleware as 'cuont' is not an option: did you mean 'count'\?$/,
    ],
    [
      "a misspelt option in another case",
      () => distribute(WORKER, { onworkererror: () => {} } as never),
      "TypeError",
      /as 'onworkererror' is not an option: did you mean 'onWorkerError'\?$/,
    ],
    [
      "an unknown option like no known one",
      () => distribute(WORKER, { threads: 2 } as never),
      "TypeError",
      /^Cannot create distribute middleware as 'threads' is not an option$/,
    ],
    [
      "relative specifier",
      () => distribute("./worker.ts"),
      "TypeError",
      /'specifier' must be an absolute URL.*or an absolute file path: current value is "\.\/worker\.ts"$/,
    ],
    [
      "relative specifier without ./",
      () => distribute("tests/fixtures/chat_worker"),
      "TypeError",
      /'specifier' must be an absolute URL.*current value is "tests\/fixtures\/chat_worker"$/,
    ],
    [
      "absolute path to no file",
      () => distribute(`${WORKER_DIR}/no_such_worker`),
      "TypeError",
      /^Cannot create distribute middleware as 'specifier' must name a file \(also tried the extensions \.ts, \.mts, \.js, \.mjs, \.cjs and an index file\): current value is ".*\/no_such_worker"$/,
    ],
    [
      "absolute path to a folder without an index file",
      () => distribute(WORKER_DIR),
      "TypeError",
      /'specifier' must name a file .*current value is ".*\/fixtures"$/,
    ],
    [
      "a Windows path is a path, not a URL with the scheme c:",
      () => distribute("C:\\bots\\worker"),
      "TypeError",
      /'specifier' must name a file .*current value is "C:\\\\bots\\\\worker"$/,
    ],
    [
      "specifier not a string",
      () => distribute(42 as never),
      "TypeError",
      /'specifier' must be an absolute URL.*current value is 42$/,
    ],
    [
      "specifier an object",
      () => distribute({ href: "file:///app/worker.ts" } as never),
      "TypeError",
      /'specifier' must be an absolute URL.*current value is an object$/,
    ],
  ];
  for (const [name, create, type, message] of cases) {
    await t.step(name, () => assert.throws(create, { name: type, message }));
  }
});

Deno.test("distribute() takes the worker as a URL, a file: URL string or an absolute path, with or without extension", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "grammyx_worker_dir_" });
  try {
    // A folder with an index file, as Node's require() resolved it for @grammyjs/runner
    // (JavaScript, so that deno test does not type-check it when the worker loads it).
    await Deno.writeTextFile(
      `${dir}/index.js`,
      `import ${JSON.stringify(WORKER.href)};\n`,
    );
    // Both worker.ts and worker.js: the .ts file is taken (the .js one would throw).
    await Deno.writeTextFile(`${dir}/both.ts`, `import ${JSON.stringify(WORKER.href)};\n`);
    await Deno.writeTextFile(`${dir}/both.js`, `throw new Error("the .js file was loaded");\n`);
    const forms: [string, string | URL, string][] = [
      ["a URL", WORKER, WORKER.href],
      ["a file: URL string", WORKER.href, WORKER.href],
      ["an absolute path with its extension", `${WORKER_DIR}/chat_worker.ts`, WORKER.href],
      ["an absolute path without extension", `${WORKER_DIR}/chat_worker`, WORKER.href],
      ["a folder with an index file", dir, new URL(`file://${dir}/index.js`).href],
      ["a path with both .ts and .js files: .ts first", `${dir}/both`, `file://${dir}/both.ts`],
    ];
    for (const [name, specifier, url] of forms) {
      await t.step(name, async () => {
        using workers = trackWorkers();
        await using api = await FakeBotApi.start();
        using _settings = configureWorkers(api);
        const bot = botFor(api);
        await using middleware = distribute(specifier, { count: 1 });
        bot.use(middleware);
        await bot.init();
        const [id] = api.pushMessages(1);
        for (const update of await bot.api.getUpdates()) await bot.handleUpdate(update);
        assert.deepEqual([...repliesByChat(api).values()].flat().map((reply) => reply.id), [id]);
        assert.deepEqual(workers.urls, [url]);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without Web Workers (Node), distribute() runs node:worker_threads workers with the same order and crash rules", async () => {
  const webWorker = globalThis.Worker;
  // @ts-ignore: the global is put back in finally
  delete globalThis.Worker;
  try {
    await using api = await FakeBotApi.start({ seed: 7 });
    const { ids, handled, byChat, failures } = await runWithOneCrash(api, 200, 10, "crash-throw");
    assert.deepEqual(handled, ids, "every update handled");
    const usedWorkers = new Set<string>();
    for (const [chat, replies] of byChat) {
      const order = replies.map((reply) => reply.id);
      assert.deepEqual(order, order.toSorted((a, b) => a - b), `chat ${chat} in order`);
      assert.ok(replies.every((reply) => !reply.overlap), `chat ${chat} never overlapped`);
      for (const reply of replies) usedWorkers.add(reply.worker);
    }
    assert.equal(usedWorkers.size, 3, "two workers and one replacement");
    assert.equal(failures.length, 1, "one crash reported");
    assert.match(failures[0]!.message, /^Uncaught Error: crash on purpose in bot<token>$/);
    assert.ok(failures[0]!.redispatched >= 1);
    assert.equal(api.pending(), 0);
  } finally {
    globalThis.Worker = webWorker;
  }
});
