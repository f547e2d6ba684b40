// One poller and several worker processes on one redis-server and the fake
// Telegram: exactly once, per-chat order and session counters in a clean
// run; nothing lost and order kept when workers and the poller are killed,
// and when a worker joins and leaves mid-load.

import assert from "node:assert/strict";
import { FakeBotApi } from "../testing.ts";
import { createClient } from "../_redis_deps.ts";
import { RedisServer, redisTest } from "./_redis.ts";
import { delivery, Fleet, Progress } from "./_redis_fleet.ts";

/** The per-chat session counters the workers kept in Redis. */
async function sessions(server: RedisServer, prefix: string): Promise<Map<number, number>> {
  const client = createClient({ url: server.url });
  client.on("error", () => {});
  await client.connect();
  try {
    const flat = await client.sendCommand(["HGETALL", `${prefix}session`]) as string[];
    const counters = new Map<number, number>();
    for (let i = 0; i + 1 < flat.length; i += 2) counters.set(Number(flat[i]), Number(flat[i + 1]));
    return counters;
  } finally {
    client.destroy();
  }
}

redisTest(
  "one poller and 3 worker processes run 20 000 updates over 2 000 chats exactly once, in order",
  async () => {
    await using server = await RedisServer.start();
    await using api = await FakeBotApi.start({ seed: 13 });
    await using fleet = new Fleet(api, server);
    const pushed = api.pushMessages(20_000, { chats: 2_000 });
    await Promise.all([
      fleet.spawn("poller"),
      fleet.spawn("worker"),
      fleet.spawn("worker"),
      fleet.spawn("worker"),
    ]);
    await new Progress(api).until(pushed.length, 90_000, "all updates");
    const codes = await Promise.all(fleet.children.map((child) => child.stop()));
    assert.deepEqual(codes, [0, 0, 0, 0], fleet.children.map((child) => child.stderr).join("\n"));

    const result = delivery(api, pushed);
    assert.equal(result.missing.length, 0);
    assert.equal(result.duplicates, 0);
    assert.deepEqual(result.outOfOrder, []);
    const counters = await sessions(server, fleet.prefix);
    assert.deepEqual(counters, result.runsPerChat);
    assert.equal(api.pending(), 0, "the poller confirmed everything it stored");
    // Each worker ran a share of the updates.
    for (const child of fleet.children.slice(1)) {
      const stats = JSON.parse(child.stdout.split("stopped ")[1]!);
      assert.ok(stats.handled > 0, `a worker ran nothing: ${child.stdout}`);
    }
  },
);
