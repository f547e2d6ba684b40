// The Redis engine's scripts against a real redis-server: idempotent stores,
// leases and rebalancing, fenced progress.

import assert from "node:assert/strict";
import { createClient } from "../_redis_deps.ts";
import {
  advance,
  heartbeat,
  lastStored,
  nextId,
  readPartitions,
  RedisKeys,
  storeBatch,
} from "../_redis_scripts.ts";
import { RedisServer, redisTest } from "./_redis.ts";

async function connect(server: RedisServer) {
  const client = createClient({ url: server.url });
  client.on("error", () => {});
  await client.connect();
  return client;
}

function parts(ids: number[], partition = 0): string[] {
  return ids.flatMap((id) => [String(partition), String(id), JSON.stringify({ update_id: id })]);
}

redisTest("a repeated store stores nothing; a late id goes after the top", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const keys = new RedisKeys("t:");
    assert.equal(await storeBatch(client, keys, 1000, parts([5, 7])), 2);
    assert.equal(await storeBatch(client, keys, 1000, parts([5, 7])), 0);
    assert.equal(await storeBatch(client, keys, 1000, parts([6, 8])), 2);
    assert.equal(await lastStored(client, keys), 8);
    const read = await readPartitions(client, keys, new Map([[0, "0"]]), 10, 0);
    assert.deepEqual(read.get(0)!.map((entry) => entry.id), ["5-0", "7-0", "7-1", "8-0"]);
    assert.deepEqual(
      read.get(0)!.map((entry) => JSON.parse(entry.data).update_id),
      [5, 7, 6, 8],
    );
  } finally {
    client.destroy();
  }
});

redisTest("the dedupe window keeps the newest ids", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const keys = new RedisKeys("t:");
    await storeBatch(client, keys, 3, parts([1, 2, 3, 4]));
    assert.deepEqual(await client.sendCommand(["ZRANGE", keys.ids, "0", "-1"]), ["2", "3", "4"]);
  } finally {
    client.destroy();
  }
});

redisTest("workers share partitions, and a stopping one gives its own up", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const keys = new RedisKeys("t:");
    const a = await heartbeat(client, keys, "a", 10_000, 4, false);
    assert.deepEqual(a, { held: [0, 1, 2, 3], surplus: [] });
    const b = await heartbeat(client, keys, "b", 10_000, 4, false);
    assert.deepEqual(b, { held: [], surplus: [] });
    const again = await heartbeat(client, keys, "a", 10_000, 4, false);
    assert.deepEqual(again, { held: [0, 1, 2, 3], surplus: [2, 3] });
    assert.deepEqual(await advance(client, keys, "a", new Map([[2, ""], [3, ""]]), true), []);
    assert.deepEqual(await heartbeat(client, keys, "b", 10_000, 4, false), {
      held: [2, 3],
      surplus: [],
    });
    // a's progress on a partition it no longer holds is refused.
    assert.deepEqual(await advance(client, keys, "a", new Map([[2, "9-0"]]), false), [2]);
    const leaving = await heartbeat(client, keys, "a", 10_000, 4, true);
    assert.deepEqual(leaving, { held: [0, 1], surplus: [0, 1] });
  } finally {
    client.destroy();
  }
});

redisTest("progress trims what finished, fenced by the lease", async () => {
  await using server = await RedisServer.start();
  const client = await connect(server);
  try {
    const keys = new RedisKeys("t:");
    await storeBatch(client, keys, 1000, parts([1, 2, 3]));
    await heartbeat(client, keys, "a", 10_000, 1, false);
    assert.deepEqual(await advance(client, keys, "a", new Map([[0, nextId("2-0")]]), false), []);
    const read = await readPartitions(client, keys, new Map([[0, "0"]]), 10, 0);
    assert.deepEqual(read.get(0)!.map((entry) => entry.id), ["3-0"]);
  } finally {
    client.destroy();
  }
});

redisTest("a Redis restart with AOF keeps what was stored", async () => {
  await using server = await RedisServer.start({ aof: true });
  const keys = new RedisKeys("t:");
  let client = await connect(server);
  await storeBatch(client, keys, 1000, parts([1, 2]));
  client.destroy();
  await server.kill();
  await server.restart();
  client = await connect(server);
  try {
    assert.equal(await lastStored(client, keys), 2);
    assert.equal(await storeBatch(client, keys, 1000, parts([2, 3])), 1);
  } finally {
    client.destroy();
  }
});
