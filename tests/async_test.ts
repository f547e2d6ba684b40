import assert from "node:assert/strict";
import { Queue } from "../_async.ts";

function queueOf(count: number): Queue<number> {
  const queue = new Queue<number>();
  for (let item = 0; item < count; item++) queue.push(item);
  return queue;
}

Deno.test("Queue gives items back first in, first out", () => {
  const queue = queueOf(3);
  assert.equal(queue.length, 3);
  assert.equal(queue.peek(), 0);
  assert.deepEqual([queue.shift(), queue.shift(), queue.shift()], [0, 1, 2]);
  assert.equal(queue.length, 0);
  assert.equal(queue.shift(), undefined);
  assert.equal(queue.peek(), undefined);
});

Deno.test("Queue.slice copies items counted from the first, like Array.prototype.slice", async (t) => {
  const queue = queueOf(10);
  queue.shift();
  queue.shift();
  const items = [2, 3, 4, 5, 6, 7, 8, 9];
  const cases: Array<[string, number | undefined, number | undefined]> = [
    ["everything", undefined, undefined],
    ["the first few", 0, 3],
    ["from the middle", 3, 5],
    ["from an index on", 6, undefined],
    ["the last few", -3, undefined],
    ["a negative end", 1, -2],
    ["a start past the end", 20, 30],
    ["an end past the end", 5, 100],
    ["a start before the first", -100, 2],
    ["an end before the start", 5, 2],
  ];
  for (const [name, start, end] of cases) {
    await t.step(name, () => assert.deepEqual(queue.slice(start, end), items.slice(start, end)));
  }
  assert.equal(queue.length, 8, "slice leaves the queue as it was");
  assert.equal(queue.peek(), 2);
});

Deno.test("Queue.slice stays right once shifted items were dropped from storage", () => {
  const queue = queueOf(3_000);
  for (let item = 0; item < 2_000; item++) assert.equal(queue.shift(), item);
  queue.push(3_000);
  assert.equal(queue.length, 1_001);
  assert.deepEqual(queue.slice(0, 3), [2_000, 2_001, 2_002]);
  assert.deepEqual(queue.slice(-2), [2_999, 3_000]);
  assert.equal(queue.slice().length, 1_001);
});
