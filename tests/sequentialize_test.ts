import assert from "node:assert/strict";
import { type Constraint, sequentialize } from "../mod.ts";
import { flush, gate, isPending } from "./_helpers.ts";

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
  const keys: Constraint[] = [null, null, "", [null, undefined, ""], false as never];
  const done = keys.map((key, index) => send(index + 1, key));
  await flush();
  assert.deepEqual(log, keys.map((_, index) => `start ${index + 1}`), "none of them waits");
  keys.forEach((_, index) => open(index + 1));
  await Promise.all(done);
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
