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

/** The number of partitions each worker holds right now, by owner. */
async function leaseOwners(server: RedisServer, fleet: Fleet): Promise<Map<string, number>> {
  const client = createClient({ url: server.url });
  client.on("error", () => {});
  await client.connect();
  try {
    const owners = new Map<string, number>();
    for (let n = 0; n < fleet.partitions; n++) {
      const owner = await client.sendCommand(["HGET", `${fleet.prefix}lease:${n}`, "owner"]);
      if (typeof owner === "string") owners.set(owner, (owners.get(owner) ?? 0) + 1);
    }
    return owners;
  } finally {
    client.destroy();
  }
}

/**
 * What a killed worker may have run without recording it: what it read and
 * had not recorded from its partitions (at most 48 each, read ahead 16 at a
 * time; 6 partitions of 16 with 3 workers).
 */
const IN_FLIGHT_PER_KILL = 6 * 48;

redisTest(
  "killing workers twice and the poller once under load loses nothing and keeps order",
  async () => {
    await using server = await RedisServer.start();
    await using api = await FakeBotApi.start({ seed: 17 });
    await using fleet = new Fleet(api, server);
    const pushed = api.pushMessages(10_000, { chats: 1_000 });
    const progress = new Progress(api);
    const [poller, first, second] = await Promise.all([
      fleet.spawn("poller"),
      fleet.spawn("worker"),
      fleet.spawn("worker"),
      fleet.spawn("worker"),
    ]);
    await progress.until(2_000, 60_000, "the first kill");
    await first!.kill();
    await fleet.spawn("worker");
    await progress.until(4_000, 60_000, "the second kill");
    await second!.kill();
    await fleet.spawn("worker");
    await progress.until(6_000, 60_000, "the poller's kill");
    await poller!.kill();
    await fleet.spawn("poller");
    await progress.until(pushed.length, 60_000, "all updates");
    const running = fleet.children.filter((child) =>
      child !== poller && child !== first && child !== second
    );
    const codes = await Promise.all(running.map((child) => child.stop()));
    assert.deepEqual(codes, running.map(() => 0), running.map((child) => child.stderr).join("\n"));

    const result = delivery(api, pushed);
    assert.deepEqual(result.missing, []);
    assert.deepEqual(result.outOfOrder, []);
    assert.ok(
      result.duplicates <= 2 * IN_FLIGHT_PER_KILL,
      `${result.duplicates} duplicates, more than was in flight at two kills`,
    );
    // Every run counted in the session, and no more than the runs that were
    // cut off between counting and reporting back.
    const counters = await sessions(server, fleet.prefix);
    let extra = 0;
    for (const [chat, runs] of result.runsPerChat) {
      const counted = counters.get(chat) ?? 0;
      assert.ok(counted >= runs, `chat ${chat}: ${counted} session increments for ${runs} runs`);
      extra += counted - runs;
    }
    assert.ok(extra <= 2 * IN_FLIGHT_PER_KILL, `${extra} session increments without a run`);
    assert.equal(api.pending(), 0);
  },
);

redisTest(
  "a fourth worker that joins and leaves mid-load takes its share and gives it back",
  async () => {
    await using server = await RedisServer.start();
    await using api = await FakeBotApi.start({ seed: 19 });
    // No worker dies here: long leases, so that a loaded machine cannot let one expire.
    await using fleet = new Fleet(api, server, { leaseMs: 10_000 });
    const pushed = api.pushMessages(4_000, { chats: 1_200 });
    const progress = new Progress(api);
    await Promise.all([
      fleet.spawn("poller"),
      fleet.spawn("worker"),
      fleet.spawn("worker"),
      fleet.spawn("worker"),
    ]);
    await progress.until(2_000, 60_000, "the join");
    const fourth = await fleet.spawn("worker");
    // More work once it runs, so that every partition holds updates while
    // the workers rebalance (a partition with none is let go, not handed over).
    pushed.push(...api.pushMessages(8_000, { chats: 1_200 }));
    // 16 partitions over 4 workers: 4 each, once the others gave theirs up.
    const start = Date.now();
    let owners = await leaseOwners(server, fleet);
    while (!(owners.size === 4 && [...owners.values()].every((count) => count === 4))) {
      assert.ok(Date.now() - start < 30_000, `no rebalance to 4 × 4: ${[...owners.values()]}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      owners = await leaseOwners(server, fleet);
    }
    await progress.until(7_000, 60_000, "the leave");
    assert.equal(await fourth.stop(), 0, fourth.stderr);
    const stats = JSON.parse(fourth.stdout.split("stopped ")[1]!);
    assert.ok(stats.handled > 0, "the fourth worker ran nothing");
    assert.equal(stats.unfinished, 0);
    await progress.until(pushed.length, 60_000, "all updates");
    const rest = fleet.children.filter((child) => child !== fourth);
    const codes = await Promise.all(rest.map((child) => child.stop()));
    assert.deepEqual(codes, [0, 0, 0, 0], rest.map((child) => child.stderr).join("\n"));

    const result = delivery(api, pushed);
    assert.deepEqual(result.missing, []);
    assert.equal(result.duplicates, 0, "a clean hand-over runs nothing twice");
    assert.deepEqual(result.outOfOrder, []);
    assert.deepEqual(await sessions(server, fleet.prefix), result.runsPerChat);
  },
);
