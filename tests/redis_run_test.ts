// forward() and runFrom() over a real redis-server in this process: a poller
// and a worker sharing one Redis, a Redis restart mid-load, bad options.

import assert from "node:assert/strict";
import { forward } from "../forward.ts";
import { runFrom, webhookTo } from "../queue.ts";
import { connectRedis, redisQueue } from "../redis_queue.ts";
import type { Report } from "../_report.ts";
import { FakeBotApi } from "../testing.ts";
import { botFor, Recorder } from "./_bot.ts";
import { gate, sleep, until } from "./_helpers.ts";
import { BlackHole } from "./_black_hole.ts";
import { RedisServer, redisTest } from "./_redis.ts";

/** A worker's side over `server`: its client and queue (closed on dispose), a bot and its recorder. */
async function workerSide(server: RedisServer, api: FakeBotApi, partitions: number) {
  const redis = await connectRedis(server.url);
  const queue = redisQueue(redis, { partitions });
  return {
    redis,
    queue,
    recorder: new Recorder(),
    bot: botFor(api),
    async [Symbol.asyncDispose]() {
      await queue.close();
      redis.destroy();
    },
  };
}

redisTest(
  "forward() stores what it polls and confirms it; runFrom() runs it in per-chat order",
  async () => {
    await using server = await RedisServer.start();
    await using api = await FakeBotApi.start();
    await using side = await workerSide(server, api, 4);
    const { queue, recorder, bot } = side;
    bot.on("message", (ctx) => recorder.record(ctx, () => {}));
    api.pushMessages(500, { chats: 20 });
    const poller = forward(botFor(api), queue, { runner: { fetch: { timeout: 1 } } });
    const worker = runFrom(bot, queue, { pollMilliseconds: 50 });
    await until(() => recorder.handled.size === 500, 20_000, "500 updates");
    const stopped = await poller.stop();
    assert.deepEqual(stopped, { unfinished: [], lost: [], redelivered: [] });
    assert.equal(api.pending(), 0, "every stored update is confirmed");
    assert.equal(poller.stats().handled, 500, "the poller's stats count what it stored");
    await worker.stop();
    assert.equal(recorder.duplicates, 0);
    assert.ok(recorder.inOrder());
    assert.equal(recorder.overlapsWithinChat, 0);
    assert.deepEqual(await queue.lanes(10), []);
  },
);

redisTest("a restarted poller stores nothing twice", async () => {
  await using server = await RedisServer.start();
  await using api = await FakeBotApi.start();
  const redis = await connectRedis(server.url);
  const queue = redisQueue(redis, { partitions: 2 });
  try {
    api.pushMessages(30);
    const first = forward(botFor(api), queue, { runner: { fetch: { timeout: 0 } } });
    await api.whenConfirmed(31);
    await first.stop();
    // Telegram forgot the confirmed ones; a second poller sees only new updates,
    // and the queue would drop a repeated id anyway.
    api.pushMessages(10);
    const second = forward(botFor(api), queue, { runner: { fetch: { timeout: 0 } } });
    await api.whenConfirmed(41);
    await second.stop();
    assert.equal(await queue.lastStored(), 40);
    const entries = await redis.sendCommand(["ZCARD", "grammyx:ids"]);
    assert.equal(entries, 40);
  } finally {
    await queue.close();
    redis.destroy();
  }
});

redisTest(
  "Redis restarted mid-load with AOF: nothing lost, nothing confirmed unstored, stop() drains, failures reported in one line without secrets",
  async () => {
    const password = "pa55-redis-secret";
    await using server = await RedisServer.start({ aof: true, password });
    await using api = await FakeBotApi.start({
      token: "987654:SECRET-token-of-the-bot-0123456789",
    });
    const reports: Report[] = [];
    const reporter = (report: Report) => void reports.push(report);
    const pollerRedis = await connectRedis(server.url, { maxReconnectDelay: 100, reporter });
    const workerRedis = await connectRedis(server.url, { maxReconnectDelay: 100, reporter });
    const pollerQueue = redisQueue(pollerRedis, { partitions: 8, reporter });
    const workerQueue = redisQueue(workerRedis, { partitions: 8, reporter });
    const recorder = new Recorder();
    const bot = botFor(api);
    bot.on("message", (ctx) => recorder.record(ctx, () => new Promise((ok) => setTimeout(ok, 1))));
    try {
      const ids = api.pushMessages(2_000, { chats: 100 });
      const poller = forward(botFor(api), pollerQueue, {
        runner: { fetch: { timeout: 1 }, reporter, retryInterval: 50 },
      });
      const worker = runFrom(bot, workerQueue, {
        pollMilliseconds: 50,
        leaseMilliseconds: 5_000,
        reporter,
      });
      // The poller has stored them all (so it is polling, not storing, when
      // Redis goes) and the worker is halfway.
      await api.whenConfirmed(ids.at(-1)! + 1);
      await until(() => recorder.handled.size >= 1_000, 20_000, "1 000 updates");
      await server.kill(); // SIGKILL: only what AOF (fsync always) has survives
      await until(() => reports.length > 0, 10_000, "a report of the lost connection");
      // New updates arrive while Redis is away: the poller takes a batch,
      // cannot store it, and so polls no further and confirms none of them.
      api.pushMessages(1_000, { chats: 100 });
      await until(() => api.stats.delivered > 2_000, 10_000, "the poller taking a new batch");
      assert.ok(api.pending() >= 1_000, `${api.pending()} unconfirmed: confirmed without a store`);
      await server.restart();
      await until(() => api.pending() === 0, 20_000, "the poller resuming");
      // A second outage, and stop() during it: it ends the poll; a batch it
      // could not store stays unconfirmed at Telegram for the next poller.
      await server.kill();
      api.pushMessages(500, { chats: 100 });
      await until(() => api.stats.delivered > 3_000, 10_000, "the poller taking a batch");
      const stopping = poller.stop();
      await server.restart();
      assert.deepEqual((await stopping).unfinished, []);
      const second = forward(botFor(api), pollerQueue, {
        runner: { fetch: { timeout: 1 }, reporter, retryInterval: 50 },
      });
      await api.whenConfirmed(3_501);
      await second.stop();
      assert.equal(api.pending(), 0);
      await until(() => recorder.handled.size === 3_500, 30_000, "all 3 500 updates");
      await worker.stop();
      // At least once: what ran while Redis was away may run again, in order.
      assert.ok(recorder.inOrder() || firstTimesInOrder(recorder), "per-chat order");
      assert.equal(recorder.overlapsWithinChat, 0);
      for (const report of reports) {
        assert.ok(!report.message.includes("\n"), `one line: ${report.message}`);
        assert.ok(!report.message.includes(password), `password in ${report.message}`);
        assert.ok(!report.message.includes("SECRET-token"), `token in ${report.message}`);
      }
      assert.ok(
        reports.some((report) => report.message.startsWith("Lost the connection to Redis")),
        reports.map((report) => report.message).join("\n"),
      );
    } finally {
      await pollerQueue.close();
      await workerQueue.close();
      pollerRedis.destroy();
      workerRedis.destroy();
    }
  },
);

/** Whether each chat's ids, repeats left out, are increasing. */
function firstTimesInOrder(recorder: Recorder): boolean {
  for (const ids of recorder.perChat.values()) {
    const seen = new Set<number>();
    let last = -1;
    for (const id of ids) {
      if (seen.has(id)) continue;
      seen.add(id);
      if (id < last) return false;
      last = id;
    }
  }
  return true;
}

redisTest("bad options end forward() before any request is sent", async () => {
  await using server = await RedisServer.start();
  await using api = await FakeBotApi.start();
  const redis = await connectRedis(server.url);
  const queue = redisQueue(redis);
  try {
    const bot = botFor(api);
    const cases: [unknown, unknown, RegExp][] = [
      [queue, { runner: { journal: {} } }, /'runner\.journal' is not an option/],
      [queue, { runner: { confirm: "handled" } }, /'runner\.confirm' is not an option/],
      [queue, { runner: { maxRetryTime: -1 } }, /'maxRetryTime'/],
      [queue, { runner: { fetch: { timeout: NaN } } }, /'fetch\.timeout'/],
      [queue, { source: { speedTrafficBalance: 2 } }, /'speedTrafficBalance'/],
      [queue, { signal: "stop" }, /'signal' must be an AbortSignal/],
      [queue, { sink: {} }, /'sink' is not an option/],
      [{}, {}, /'queue' must be a queue engine with store\(\)/],
    ];
    for (const [engine, options, message] of cases) {
      assert.throws(() => forward(bot, engine as never, options as never), message);
    }
    assert.throws(() => forward({} as never, queue), /'bot' must have api\.getUpdates/);
    assert.deepEqual(api.stats.requests, {});
  } finally {
    await queue.close();
    redis.destroy();
  }
});

redisTest(
  "webhookTo() over Redis: out-of-order deliveries run in chat order, a repeat stores nothing",
  async () => {
    await using server = await RedisServer.start();
    await using api = await FakeBotApi.start();
    await using side = await workerSide(server, api, 1);
    const { queue, recorder, bot } = side;
    bot.on("message", (ctx) => recorder.record(ctx, () => {}));
    const ingress = webhookTo(queue);
    const post = (id: number, chat: number) =>
      ingress(
        new Request("http://bot/", {
          method: "POST",
          body: JSON.stringify({
            update_id: id,
            message: {
              message_id: id,
              date: 0,
              chat: { id: chat, type: "private", first_name: "A" },
            },
          }),
        }),
      );
    // Telegram delivers chats independently: chat 2's 11 overtakes chat 1's 10.
    for (const [id, chat] of [[11, 2], [10, 1], [12, 1], [12, 1], [13, 2]] as const) {
      assert.equal((await post(id, chat)).status, 200);
    }
    const worker = runFrom(bot, queue, { pollMilliseconds: 20 });
    await until(() => recorder.handled.size === 4, 10_000, "4 updates");
    await worker.stop();
    assert.equal(recorder.duplicates, 0);
    assert.deepEqual(recorder.perChat.get(1), [10, 12]);
    assert.deepEqual(recorder.perChat.get(2), [11, 13]);
  },
);

redisTest(
  "a worker reads a partition ahead of what still runs: 48 of one partition run at once, each chat in order",
  async () => {
    await using server = await RedisServer.start();
    await using api = await FakeBotApi.start();
    await using side = await workerSide(server, api, 1);
    const { queue, recorder, bot } = side;
    const held = gate();
    let running = 0;
    bot.on("message", (ctx) =>
      recorder.record(ctx, async () => {
        running++;
        await held.promise;
        running--;
      }));
    // 200 chats, two updates each: a read of 16 holds 16 chats' first updates.
    const ids = api.pushMessages(400, { chatOf: (index) => 1 + (index % 200) });
    const poller = forward(botFor(api), queue, { runner: { fetch: { timeout: 0 } } });
    await api.whenConfirmed(ids.at(-1)! + 1);
    await poller.stop();
    const worker = runFrom(bot, queue, { pollMilliseconds: 50 });
    // Without reading ahead, 16 (one read) would be the most that runs.
    await until(() => running === 48, 10_000, "48 running");
    await sleep(50);
    assert.equal(running, 48, "no more than 48 read and not recorded");
    held.open();
    await until(() => recorder.handled.size === 400, 20_000, "400 updates");
    await worker.stop();
    assert.equal(recorder.duplicates, 0);
    assert.ok(recorder.inOrder());
    assert.equal(recorder.overlapsWithinChat, 0);
    assert.deepEqual(await queue.lanes(10), []);
  },
);

redisTest(
  "a worker cut off from Redis starts nothing it read once its lease lapsed: the new holder runs it",
  async () => {
    await using server = await RedisServer.start();
    await using api = await FakeBotApi.start();
    await using hole = new BlackHole(server.port);
    hole.answer();
    // Worker A reaches Redis through the proxy; B directly.
    const cut = await connectRedis(`redis://127.0.0.1:${hole.port}`, { maxReconnectDelay: 50 });
    const queueA = redisQueue(cut, { partitions: 1 });
    await using side = await workerSide(server, api, 1);
    const ids = api.pushMessages(3, { chatOf: (index) => index + 1 });
    const poller = forward(botFor(api), side.queue, { runner: { fetch: { timeout: 0 } } });
    await api.whenConfirmed(ids.at(-1)! + 1);
    await poller.stop();
    // A: one slot, held by the first update; the second waits in its sink,
    // the third (read ahead) for the sink.
    const held = gate();
    const ranOnA: number[] = [];
    const botA = botFor(api);
    botA.on("message", async (ctx) => {
      ranOnA.push(ctx.update.update_id);
      if (ctx.update.update_id === ids[0]) await held.promise;
    });
    const a = runFrom(botA, queueA, {
      concurrency: 1,
      leaseMilliseconds: 300,
      pollMilliseconds: 50,
      reporter: () => {},
    });
    await until(() => ranOnA.length === 1, 10_000, "the first update on A");
    hole.silence(); // A can neither renew nor record: its lease lapses in Redis
    side.bot.on("message", (ctx) => side.recorder.record(ctx, () => {}));
    const b = runFrom(side.bot, side.queue, { pollMilliseconds: 50 });
    await until(() => side.recorder.handled.size === 3, 10_000, "all three on B");
    held.open();
    await sleep(100); // A's slot is free: what it still holds would start now
    hole.answer();
    await b.stop();
    await a.stop();
    await queueA.close();
    cut.destroy();
    // node-redis waits out a reconnect delay with a timer that destroy() does
    // not cancel (at most maxReconnectDelay): let it end inside the test.
    await sleep(100);
    assert.ok(!ranOnA.includes(ids[2]!), `A started an update under a lapsed lease: ${ranOnA}`);
  },
);
