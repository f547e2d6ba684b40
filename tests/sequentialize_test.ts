import assert from "node:assert/strict";
import { Bot, type Context } from "grammy";
import { type Constraint, run, sequentialize } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";
import { flush, gate, isPending, until } from "./_helpers.ts";

type Ctx = { key: Constraint; id: number };

function setup() {
  const tails = sequentialize((ctx: Ctx) => ctx.key);
  const log: string[] = [];
  const gates = new Map<number, ReturnType<typeof gate>>();
  function send(id: number, key: Ctx["key"]) {
    const g = gate();
    gates.set(id, g);
    return tails({ id, key }, async () => {
      log.push(`start ${id}`);
      await g.promise;
      log.push(`end ${id}`);
    });
  }
  return { send, log, open: (id: number) => gates.get(id)!.open() };
}

Deno.test("sequentialize() runs updates of one key one after another, in order", async () => {
  const { send, log, open } = setup();
  const first = send(1, "a");
  const second = send(2, "a");
  await flush();
  assert.deepEqual(log, ["start 1"]);
  assert.ok(await isPending(second));
  open(2); // releasing the later update first changes nothing
  await flush();
  assert.deepEqual(log, ["start 1"]);
  open(1);
  await Promise.all([first, second]);
  assert.deepEqual(log, ["start 1", "end 1", "start 2", "end 2"]);
});

Deno.test("sequentialize() runs updates of different keys at once", async () => {
  const { send, log, open } = setup();
  const both = [send(1, "a"), send(2, "b")];
  await flush();
  assert.deepEqual(log, ["start 1", "start 2"]);
  open(1);
  open(2);
  await Promise.all(both);
});

Deno.test("sequentialize() waits until every key of a multi-key update is free", async (t) => {
  await t.step("a later update waits for both chains", async () => {
    const { send, log, open } = setup();
    const done = [send(1, "chat"), send(2, "user"), send(3, ["chat", "user"])];
    await flush();
    assert.deepEqual(log, ["start 1", "start 2"]);
    open(1);
    await flush();
    assert.ok(!log.includes("start 3"), "3 must wait for the user key too");
    open(2);
    await flush();
    assert.ok(log.includes("start 3"));
    open(3);
    await Promise.all(done);
  });
  await t.step("an update of one key waits for an earlier multi-key update", async () => {
    const { send, log, open } = setup();
    const done = [send(1, ["a", "b"]), send(2, "b"), send(3, "c")];
    await flush();
    assert.deepEqual(log, ["start 1", "start 3"]);
    open(1);
    open(3);
    await flush();
    assert.ok(log.includes("start 2"));
    open(2);
    await Promise.all(done);
  });
  await t.step("duplicate keys in one constraint count once", async () => {
    const { send, log, open } = setup();
    const done = send(1, ["a", "a"]);
    await flush();
    assert.deepEqual(log, ["start 1"]);
    open(1);
    await done;
  });
});

Deno.test("sequentialize() does not constrain updates without a key", async () => {
  const { send, log, open } = setup();
  const done = [send(1, undefined), send(2, undefined), send(3, []), send(4, "")];
  await flush();
  assert.deepEqual(log, ["start 1", "start 2", "start 3", "start 4"]);
  for (const id of [1, 2, 3, 4]) open(id);
  await Promise.all(done);
});

Deno.test("sequentialize() puts no constraint on a null or other falsy key, as @grammyjs/runner does", async () => {
  const { send, log, open } = setup();
  const keys: Constraint[] = [null, null, 0, 0, 0n, "", [null, undefined, "", 0], false as never];
  const done = keys.map((key, index) => send(index + 1, key));
  await flush();
  assert.deepEqual(log, keys.map((_, index) => `start ${index + 1}`), "none of them waits");
  keys.forEach((_, index) => open(index + 1));
  await Promise.all(done);
});

Deno.test('sequentialize() takes numbers and bigints as keys: 5, 5n and "5" are one key', async () => {
  const { send, log, open } = setup();
  const done = [send(1, 5), send(2, "5"), send(3, 5n), send(4, [undefined, 5]), send(5, -1001)];
  await flush();
  assert.deepEqual(log, ["start 1", "start 5"]);
  for (const id of [1, 2, 3]) {
    open(id);
    await flush();
  }
  assert.deepEqual(log.filter((line) => line.startsWith("start")), [
    "start 1",
    "start 5",
    "start 2",
    "start 3",
    "start 4",
  ]);
  open(4);
  open(5);
  await Promise.all(done);
});

Deno.test("sequentialize() keeps grammY's [ctx.chat?.id, ctx.from?.id] keys in order", async () => {
  const bot = new Bot("123:placeholder-token", {
    botInfo: { id: 123, is_bot: true, first_name: "Bot", username: "bot" } as never,
  });
  // A key function that returns numbers, undefined and null type-checks as it is.
  bot.use(sequentialize((ctx: Context) => [ctx.chat?.id, ctx.from?.id ?? null]));
  const log: number[] = [];
  const gates = new Map<number, ReturnType<typeof gate>>();
  bot.use(async (ctx) => {
    const g = gate();
    gates.set(ctx.update.update_id, g);
    log.push(ctx.update.update_id);
    await g.promise;
  });
  const message = (update_id: number, chat: number, user: number) => ({
    update_id,
    message: {
      message_id: update_id,
      date: 0,
      chat: { id: chat, type: "private" as const, first_name: "A" },
      from: { id: user, is_bot: false, first_name: "A" },
      text: "hi",
    },
  });
  const poll = { id: "p", question: "?", options: [], total_voter_count: 0, is_closed: false };
  const done = [
    bot.handleUpdate(message(1, 1, 10)),
    bot.handleUpdate(message(2, 2, 10)), // shares user 10 with update 1
    bot.handleUpdate(message(3, 3, 30)),
    bot.handleUpdate({ update_id: 4, poll: poll as never }), // no chat, no sender:
    bot.handleUpdate({ update_id: 5, poll: poll as never }), // no constraint
  ];
  await flush();
  assert.deepEqual(log, [1, 3, 4, 5]);
  gates.get(1)!.open();
  await flush();
  assert.deepEqual(log, [1, 3, 4, 5, 2]);
  for (const id of [2, 3, 4, 5]) gates.get(id)!.open();
  await Promise.all(done);
});

Deno.test("sequentialize() rejects a key that is not a string, a number or a bigint", async (t) => {
  const wrong: [string, unknown, RegExp][] = [
    ["an object", { id: 7 }, /returned an object: .*ctx\.chat\?\.id, not ctx\.chat/],
    ["true", true, /returned true: /],
    ["a function", () => "7", /returned a function: /],
    ["a symbol", Symbol("chat"), /returned a symbol \(Symbol\(chat\)\): /],
    ["an array holding an object", ["7", { id: 7 }], /returned an array holding an object: /],
    ["an array holding an array", [["7"]], /returned an array holding an array: /],
  ];
  for (const [name, key, message] of wrong) {
    await t.step(name, async () => {
      const ordered = sequentialize((ctx: { key: unknown }) => ctx.key as Constraint);
      let ran = false;
      await assert.rejects(ordered({ key }, () => void (ran = true)), (error: Error) => {
        assert.equal(error.name, "TypeError");
        assert.match(error.message, /^sequentialize\(\) key function /);
        assert.match(error.message, message);
        return true;
      });
      assert.ok(!ran, "the update must not run without its order");
      // Nothing was held: the next update of the same valid key runs at once.
      let next = false;
      const later = ordered({ key: "7" }, () => void (next = true));
      assert.ok(next);
      await later;
    });
  }
  await t.step("under run(), the error reaches bot.catch and the runner goes on", async () => {
    await using api = await FakeBotApi.start();
    const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
    bot.use(sequentialize((ctx: Context) => ctx.chat as never));
    bot.use(() => assert.fail("the update must not run without its order"));
    const caught: unknown[] = [];
    bot.catch((error) => void caught.push(error.error));
    api.pushMessages(2);
    const handle = run(bot, { runner: { fetch: { timeout: 1 } } });
    await until(() => caught.length === 2, 10_000, "two errors");
    await handle.stop();
    assert.ok(caught.every((error) => error instanceof TypeError));
    assert.match(String(caught[0]), /ctx\.chat\?\.id, not ctx\.chat/);
  });
});

Deno.test("sequentialize() lets a failing update pass its error on without blocking the next", async () => {
  const ordered = sequentialize((ctx: Ctx) => ctx.key);
  const failing = ordered({ id: 1, key: "a" }, () => Promise.reject(new Error("boom")));
  let ran = false;
  const next = ordered({ id: 2, key: "a" }, () => void (ran = true));
  await assert.rejects(failing, /boom/);
  await next;
  assert.ok(ran);
});

Deno.test("sequentialize() forgets a key when its chain is empty", async () => {
  // Observe memory through the behaviour: a new update of a finished key
  // starts at once, and many keys leave nothing behind (checked by size).
  const seen: string[] = [];
  const ordered = sequentialize((ctx: Ctx) => ctx.key);
  for (let i = 0; i < 1000; i++) {
    await ordered({ id: i, key: `k${i}` }, () => void seen.push(`k${i}`));
  }
  assert.equal(seen.length, 1000);
  // A key whose chain ended runs immediately (synchronously reaches next()).
  let started = false;
  const pending = ordered({ id: 0, key: "k1" }, () => void (started = true));
  assert.ok(started, "an update of a forgotten key must not wait for anything");
  await pending;
});

Deno.test("sequentialize() rejects a constraint that is not a function", () => {
  assert.throws(
    () => sequentialize("chat" as never),
    { name: "TypeError", message: /'constraint' must be a function: current value is "chat"/ },
  );
});
