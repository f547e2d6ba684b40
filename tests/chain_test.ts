import assert from "node:assert/strict";
import { KeyedChains } from "../_chain.ts";
import { flush, gate, isPending } from "./_helpers.ts";

/** Items that log their start and end and finish when their gate opens. */
function setup() {
  const chains = new KeyedChains();
  const log: string[] = [];
  const gates = new Map<string, ReturnType<typeof gate>>();
  function add(name: string, keys: string[]) {
    const g = gate();
    gates.set(name, g);
    return chains.run(keys, async () => {
      log.push(`start ${name}`);
      await g.promise;
      log.push(`end ${name}`);
      return name;
    });
  }
  return { chains, add, log, open: (name: string) => gates.get(name)!.open() };
}

Deno.test("KeyedChains runs the items of one key one after another, in the order they joined", async () => {
  const { chains, add, log, open } = setup();
  const items = [add("a1", ["a"]), add("a2", ["a"]), add("a3", ["a"])];
  await flush();
  assert.deepEqual(log, ["start a1"]);
  open("a3");
  open("a2"); // releasing later items first changes nothing
  assert.ok(await isPending(items[1]!));
  assert.deepEqual(log, ["start a1"]);
  open("a1");
  assert.deepEqual(await Promise.all(items), ["a1", "a2", "a3"]);
  assert.deepEqual(log, ["start a1", "end a1", "start a2", "end a2", "start a3", "end a3"]);
  assert.equal(chains.size, 0);
});

Deno.test("KeyedChains starts an item with free keys before run() returns", async () => {
  const chains = new KeyedChains();
  let started = 0;
  const items = [chains.run(["a"], () => started++), chains.run([], () => started++)];
  assert.equal(started, 2);
  await Promise.all(items);
});

Deno.test("KeyedChains runs items of different keys at once", async () => {
  const { add, log, open } = setup();
  const items = [add("a", ["a"]), add("b", ["b"]), add("none", [])];
  await flush();
  assert.deepEqual(log, ["start a", "start b", "start none"]);
  for (const name of ["a", "b", "none"]) open(name);
  await Promise.all(items);
});

Deno.test("KeyedChains runs an item with several keys once every one is free", async (t) => {
  await t.step("it waits for the chains of all its keys", async () => {
    const { chains, add, log, open } = setup();
    const items = [add("chat", ["chat"]), add("user", ["user"]), add("both", ["chat", "user"])];
    await flush();
    assert.deepEqual(log, ["start chat", "start user"]);
    open("chat");
    assert.ok(await isPending(items[2]!));
    assert.ok(!log.includes("start both"), "both must wait for the user key too");
    open("user");
    await flush();
    assert.ok(log.includes("start both"));
    open("both");
    await Promise.all(items);
    assert.equal(chains.size, 0);
  });
  await t.step("later items of each of its keys wait for it", async () => {
    const { chains, add, log, open } = setup();
    const items = [add("ab", ["a", "b"]), add("b", ["b"]), add("a", ["a"]), add("c", ["c"])];
    await flush();
    assert.deepEqual(log, ["start ab", "start c"]);
    open("ab");
    await flush();
    assert.deepEqual(log.slice(3), ["start b", "start a"]);
    for (const name of ["a", "b", "c"]) open(name);
    await Promise.all(items);
    assert.equal(chains.size, 0);
  });
  await t.step("a duplicate key counts once", async () => {
    const { chains, add, log, open } = setup();
    const item = add("aa", ["a", "a"]);
    await flush();
    assert.deepEqual(log, ["start aa"]);
    assert.equal(chains.size, 1);
    open("aa");
    await item;
    assert.equal(chains.size, 0);
  });
});

Deno.test("KeyedChains passes an item's error on and runs the next item of its keys", async () => {
  const chains = new KeyedChains();
  const blocker = gate();
  const failing = chains.run(["a", "b"], async () => {
    await blocker.promise;
    throw new Error("boom");
  });
  const synchronous = chains.run(["a"], () => {
    throw new Error("thrown synchronously");
  });
  const ran: string[] = [];
  const next = [chains.run(["a"], () => ran.push("a")), chains.run(["b"], () => ran.push("b"))];
  blocker.open();
  await assert.rejects(failing, /boom/);
  await assert.rejects(synchronous, /thrown synchronously/);
  await Promise.all(next);
  assert.deepEqual(ran, ["b", "a"]);
  assert.equal(chains.size, 0);
});

Deno.test("KeyedChains waits for a busy key through the given wait function", async () => {
  const chains = new KeyedChains();
  const first = gate();
  const log: string[] = [];
  const items = [
    chains.run(["a"], () => first.promise),
    chains.run(["a"], () => void log.push("second ran"), async (earlier) => {
      log.push("waiting");
      await earlier;
      log.push("turn came");
    }),
    chains.run(["b"], () => void log.push("free key ran"), () => {
      throw new Error("a free key must not wait");
    }),
  ];
  assert.deepEqual(log, ["waiting", "free key ran"]);
  first.open();
  await Promise.all(items);
  assert.deepEqual(log, ["waiting", "free key ran", "turn came", "second ran"]);
});

Deno.test("KeyedChains forgets every key once its chain is empty", async () => {
  const chains = new KeyedChains();
  const release = gate();
  const items: Promise<unknown>[] = [];
  for (let i = 0; i < 1000; i++) {
    const keys = [`chat ${i % 50}`, `user ${i % 7}`];
    items.push(chains.run(keys, () => (i % 3 === 0 ? release.promise : undefined)));
  }
  assert.equal(chains.size, 57);
  release.open();
  await Promise.all(items);
  assert.equal(chains.size, 0);
});
