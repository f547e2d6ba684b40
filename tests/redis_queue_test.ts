// The Redis Streams engine against a real redis-server: idempotent stores,
// leases with a share per worker, fenced records, dead letters, options.

import assert from "node:assert/strict";
import type { Update } from "../_deps.ts";
import { createClient } from "../_redis_deps.ts";
import type { Lease, QueuedUpdate } from "../queue.ts";
import { connectRedis, type RedisQueue, redisQueue } from "../redis_queue.ts";
import { RedisServer, redisTest } from "./_redis.ts";

type Client = ReturnType<typeof createClient>;

async function connect(server: RedisServer): Promise<Client> {
  const client = createClient({ url: server.url });
  client.on("error", () => {});
  await client.connect();
  return client;
}

function message(id: number, chat: number): Update {
  return {
    update_id: id,
    message: { message_id: id, date: 0, chat: { id: chat, type: "private", first_name: "A" } },
  } as Update;
}

/** Reads a whole lane under a fresh lease of `owner`. */
async function readAll(queue: RedisQueue, lane: string, owner = "reader") {
  const lease = await queue.lease(lane, owner, 10_000);
  assert.ok(lease !== undefined, `could not lease lane ${lane}`);
  return { lease, items: await queue.read(lease, 1_000) };
}

redisTest("a repeated store stores nothing, and a late id runs after the ones stored", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const queue = redisQueue(client, { partitions: 1 });
    await queue.store([message(5, 1), message(7, 2)]);
    await queue.store([message(5, 1), message(7, 2)]);
    await queue.store([message(6, 3), message(8, 1)]); // 6 arrives after 7 (a webhook race)
    assert.equal(await queue.lastStored(), 8);
    const { items } = await readAll(queue, "0");
    assert.deepEqual(items.map((item) => item.update.update_id), [5, 7, 6, 8]);
    assert.deepEqual(items.map((item) => item.key), ["1", "2", "3", "1"]);
    assert.deepEqual(items[0]!.update, message(5, 1));
  } finally {
    client.destroy();
  }
});

redisTest("updates go to partitions by key; the key function is sequentialize()'s", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const queue = redisQueue(client, {
      partitions: 4,
      key: (ctx) => ctx.from?.id === 9 ? ["vip", ctx.chat?.id] : ctx.chat?.id,
    });
    const updates = Array.from({ length: 40 }, (_, i) => message(i + 1, 1 + (i % 8)));
    await queue.store(updates);
    await queue.store([{ update_id: 100 } as Update]); // no key: its own
    const lanes = await queue.lanes(100);
    const seen = new Map<number, string>();
    let total = 0;
    for (const lane of lanes) {
      const { items } = await readAll(queue, lane);
      total += items.length;
      for (const item of items) {
        const chat = item.update.message?.chat.id;
        if (chat === undefined) {
          assert.equal(item.key, "update 100");
          continue;
        }
        assert.equal(seen.get(chat) ?? lane, lane, `chat ${chat} is in one partition`);
        seen.set(chat, lane);
      }
      // In a partition, each key's updates come in update_id order.
      for (const key of new Set(items.map((item) => item.key))) {
        const ids = items.filter((item) => item.key === key).map((item) => item.update.update_id);
        assert.deepEqual(ids, ids.toSorted((a, b) => a - b));
      }
    }
    assert.equal(total, 41);
    assert.ok(new Set(seen.values()).size > 1, "8 chats spread over more than one partition");
  } finally {
    client.destroy();
  }
});

redisTest("the dedupe window remembers the newest ids only", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const queue = redisQueue(client, { partitions: 1, dedupeWindow: 2 });
    await queue.store([message(1, 1), message(2, 1), message(3, 1)]);
    assert.deepEqual(await client.sendCommand(["ZRANGE", "grammyx:ids", "0", "-1"]), ["2", "3"]);
    await queue.store([message(3, 1)]);
    const { items } = await readAll(queue, "0");
    assert.equal(items.length, 3);
  } finally {
    client.destroy();
  }
});

redisTest("workers hold about partitions / workers each; a surplus lane is let go", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const queue = redisQueue(client, { partitions: 4 });
    await queue.store(Array.from({ length: 40 }, (_, i) => message(i + 1, i + 1)));
    const a: Lease[] = [];
    for (const lane of ["0", "1", "2", "3"]) a.push((await queue.lease(lane, "a", 10_000))!);
    assert.equal(a.filter(Boolean).length, 4, "a lone worker takes every partition");
    assert.equal(await queue.lease("0", "b", 10_000), undefined, "a live lease is not taken");
    // b counts now: the share is 2 each. a reads nothing from its surplus
    // lanes and lets them go though they hold updates.
    const surplus = [];
    for (const lease of a) {
      if ((await queue.read(lease, 10)).length === 0) surplus.push(lease);
      else await queue.record([], [lease], 10_000);
      if (surplus.length === 2) break;
    }
    assert.equal(surplus.length, 2);
    for (const lease of surplus) assert.equal(await queue.release(lease, 10_000), "released");
    for (const lease of surplus) {
      assert.ok(await queue.lease(lease.lane, "b", 10_000), `b takes lane ${lease.lane}`);
    }
    // a holds its share: it may not take a lane back.
    assert.equal(await queue.lease(surplus[0]!.lane, "a", 10_000), undefined);
  } finally {
    client.destroy();
  }
});

redisTest(
  "records are fenced by the lease; a takeover counts an attempt; dead letters move aside",
  async () => {
    await using server = await RedisServer.start();
    const client = await connect(server);
    try {
      const queue = redisQueue(client, { partitions: 1 });
      await queue.store([message(1, 1), message(2, 1), message(3, 2)]);
      const first = (await queue.lease("0", "a", 50))!;
      const read = await queue.read(first, 10);
      assert.equal(read.length, 3);
      // a dies; its lease expires and b takes over.
      await new Promise((resolve) => setTimeout(resolve, 80)); // lets a 50 ms lease expire in Redis
      const second = (await queue.lease("0", "b", 10_000))!;
      assert.ok(second);
      const lost = await queue.record(
        [{ lease: first, item: read[0]!, outcome: "handled" }],
        [],
        1,
      );
      assert.deepEqual(lost, [first], "a can no longer record");
      const again = await queue.read(second, 10);
      // The head of each key was running when a died: one attempt each.
      assert.deepEqual(again.map((item) => [item.update.update_id, item.attempts]), [
        [1, 1],
        [2, 0],
        [3, 1],
      ]);
      const records = again.map((item: QueuedUpdate<Update>, i) => ({
        lease: second,
        item,
        outcome: i === 0 ? "deadLettered" as const : "handled" as const,
      }));
      assert.deepEqual(await queue.record(records, [], 10_000), []);
      assert.equal(await queue.release(second, 10_000), "released");
      assert.deepEqual(await queue.lanes(10), []);
      const dead = await client.sendCommand(["XRANGE", "grammyx:dead", "-", "+"]) as [
        string,
        string[],
      ][];
      assert.equal(dead.length, 1);
      assert.equal(dead[0]![1][dead[0]![1].indexOf("u") + 1], "1");
    } finally {
      client.destroy();
    }
  },
);

redisTest(
  "release keeps a lane with updates; handBack lets it go and forgets the worker",
  async () => {
    await using server = await RedisServer.start();
    const client = await connect(server);
    try {
      const queue = redisQueue(client, { partitions: 2 });
      await queue.store([message(1, 1)]);
      const [lane] = await queue.lanes(10);
      const lease = (await queue.lease(lane!, "a", 10_000))!;
      assert.equal(await queue.release(lease, 10_000), "waiting");
      const woken: string[] = [];
      const stop = queue.listen((lane) => void woken.push(lane));
      try {
        // The wake-up connection subscribes in the background: wait until a
        // store's wake-up arrives.
        const start = Date.now();
        for (let id = 2; woken.length === 0; id++) {
          assert.ok(Date.now() - start < 5_000, "no wake-up");
          await queue.store([message(id, 1)]);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        woken.length = 0;
        await queue.handBack(lease);
        const handed = Date.now();
        while (!woken.includes(lane!)) {
          assert.ok(Date.now() - handed < 5_000, "no wake-up after handBack");
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      } finally {
        stop();
      }
      await queue.close();
      assert.deepEqual(await client.sendCommand(["ZRANGE", "grammyx:owners", "0", "-1"]), []);
      assert.ok(await queue.lease(lane!, "b", 10_000), "another worker takes it at once");
    } finally {
      client.destroy();
    }
  },
);

redisTest("bad options are rejected with errors naming them", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const cases: [unknown, typeof TypeError | typeof RangeError, RegExp][] = [
      [
        { partitions: 0 },
        RangeError,
        /'partitions' must be a positive integer: current value is 0/,
      ],
      [{ partitions: 1.5 }, RangeError, /'partitions'.*1\.5/],
      [{ partitions: NaN }, RangeError, /'partitions'.*NaN/],
      [{ partitions: Infinity }, RangeError, /'partitions'.*Infinity/],
      [{ partitions: 2 ** 31 }, RangeError, /'partitions' must be at most 1024/],
      [{ partitions: "16" }, TypeError, /'partitions'.*"16"/],
      [{ prefix: 7 }, TypeError, /'prefix' must be a string/],
      [{ key: "chat" }, TypeError, /'key' must be a function/],
      [{ dedupeWindow: 0 }, RangeError, /'dedupeWindow'/],
      [{ partition: 4 }, TypeError, /'partition' is not an option: did you mean 'partitions'\?/],
      [[], TypeError, /'options' must be an object/],
    ];
    for (const [options, type, message] of cases) {
      assert.throws(() => redisQueue(client, options as never), (error: Error) => {
        assert.ok(error instanceof type, `${error.name} for ${Deno.inspect(options)}`);
        assert.match(error.message, /^Cannot create Redis queue as /);
        assert.match(error.message, message);
        return true;
      });
    }
    assert.throws(() => redisQueue({} as never), /'client' must be a node-redis client/);
    const queue = redisQueue(client, { key: () => ({ id: 1 }) as never });
    await assert.rejects(queue.store([message(1, 1)]), /key function returned an object/);
    await assert.rejects(queue.store([{ update_id: -1 }] as never), /'update_id'/);
    assert.deepEqual(await queue.lanes(10), [], "a rejected batch stores nothing");
  } finally {
    client.destroy();
  }
});

redisTest("connectRedis() rejects a wrong URL clearly, without the password", async () => {
  await using server = await RedisServer.start({ password: "hunter2-secret" });
  await assert.rejects(connectRedis("http://127.0.0.1:6379"), TypeError);
  await assert.rejects(
    connectRedis("not a url :hunter2-secret@"),
    (error: Error) => error instanceof TypeError && !error.message.includes("hunter2"),
  );
  await assert.rejects(connectRedis(server.url, { connectTimeout: 0 }), RangeError);
  await assert.rejects(connectRedis(server.url, { connectTimeout: 2 ** 31 }), RangeError);
  await assert.rejects(connectRedis(server.url, { maxReconnectDelay: NaN }), RangeError);
  await assert.rejects(connectRedis(server.url, { reporter: "log" } as never), TypeError);
  await assert.rejects(
    connectRedis(server.url, { retries: 3 } as never),
    /'retries' is not an option/,
  );
  // Nothing listens on the port of a stopped server.
  await using stopped = await RedisServer.start();
  const url = stopped.url.replace("redis://", "redis://:hunter2-secret@");
  await stopped.kill();
  await assert.rejects(connectRedis(url), (error: Error) => {
    assert.match(
      error.message,
      /^Cannot connect to Redis at redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
    assert.ok(!error.message.includes("hunter2"), error.message);
    return true;
  });
  // The wrong password: refused by the server.
  const wrong = server.url.replace("hunter2-secret", "wrong-pass");
  await assert.rejects(connectRedis(wrong), (error: Error) => {
    assert.ok(!error.message.includes("wrong-pass"), error.message);
    return true;
  });
  const redis = await connectRedis(server.url);
  try {
    assert.equal(await redis.sendCommand(["PING"]), "PONG");
  } finally {
    redis.destroy();
  }
});

redisTest("an entry that holds no update is moved to the dead letters and reported", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const reports: string[] = [];
    const queue = redisQueue(client, {
      partitions: 1,
      reporter: (report) => void reports.push(report.message),
    });
    await queue.store([message(1, 1)]);
    await client.sendCommand(["XADD", "grammyx:p:0", "2-0", "u", "2", "k", "1", "d", "{not json"]);
    await client.sendCommand(["XADD", "grammyx:p:0", "3-0", "u", "3", "k", "1", "d", "[]"]);
    await queue.store([message(4, 1)]);
    const { items } = await readAll(queue, "0");
    assert.deepEqual(items.map((item) => item.update.update_id), [1, 4]);
    assert.equal(await client.sendCommand(["XLEN", "grammyx:dead"]), 2);
    assert.equal(await client.sendCommand(["XLEN", "grammyx:p:0"]), 2);
    assert.match(reports.join("\n"), /Moved 2 entries of partition 0 that hold no update/);
  } finally {
    client.destroy();
  }
});

redisTest(
  "readNext() reads on after what it returned; read() starts again at the oldest unrecorded",
  async () => {
    await using server = await RedisServer.start();
    const client = await connect(server);
    try {
      const queue = redisQueue(client, { partitions: 1 });
      await queue.store([1, 2, 3, 4, 5].map((id) => message(id, id)));
      const lease = (await queue.lease("0", "a", 10_000))!;
      const ids = (items: QueuedUpdate<Update>[]) => items.map((item) => item.update.update_id);
      const first = await queue.readNext!(lease, 2);
      assert.deepEqual(ids(first), [1, 2]);
      assert.deepEqual(
        ids(await queue.readNext!(lease, 2)),
        [3, 4],
        "not recorded, not read again",
      );
      await queue.record([{ lease, item: first[0]!, outcome: "handled" }], [], 10_000);
      assert.deepEqual(ids(await queue.read(lease, 10)), [2, 3, 4, 5], "the oldest unrecorded");
      assert.deepEqual(ids(await queue.readNext!(lease, 10)), [], "read on after 5");
      await queue.store([message(6, 6)]);
      assert.deepEqual(ids(await queue.readNext!(lease, 10)), [6]);
      // A fresh lease reads from the oldest again.
      await queue.handBack(lease);
      const again = (await queue.lease("0", "b", 10_000))!;
      assert.deepEqual(ids(await queue.readNext!(again, 10)), [2, 3, 4, 5, 6]);
    } finally {
      client.destroy();
    }
  },
);
