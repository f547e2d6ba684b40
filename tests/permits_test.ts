import assert from "node:assert/strict";
import { Permits } from "../_permits.ts";

/** Acquires a permit for `name`, recording in `order` when it is granted. */
function take(permits: Permits, order: string[], name: string, priority?: "high" | "normal") {
  return permits.acquire(() => order.push(name), priority);
}

Deno.test("Permits grants free permits at once and blocks when none is left", () => {
  const permits = new Permits(2);
  const order: string[] = [];
  take(permits, order, "a");
  take(permits, order, "b");
  assert.deepEqual(order, ["a", "b"], "granted before acquire() returned");
  assert.equal(permits.free, 0);
  take(permits, order, "c");
  assert.deepEqual(order, ["a", "b"], "no permit left: c waits");
  assert.equal(permits.waiting, 1);
  permits.release();
  assert.deepEqual(order, ["a", "b", "c"], "the permit went straight to c");
  assert.equal(permits.free, 0);
  assert.equal(permits.waiting, 0);
});

Deno.test("Permits serves waiters of one priority first come, first served", () => {
  const permits = new Permits(1);
  const order: string[] = [];
  take(permits, order, "holder");
  for (const name of ["1", "2", "3"]) take(permits, order, name);
  for (let i = 0; i < 3; i++) permits.release();
  assert.deepEqual(order, ["holder", "1", "2", "3"]);
});

Deno.test("Permits hands a released permit to a high-priority waiter ahead of earlier normal ones", () => {
  const permits = new Permits(1);
  const order: string[] = [];
  take(permits, order, "holder");
  take(permits, order, "new 1");
  take(permits, order, "new 2");
  take(permits, order, "back 1", "high");
  take(permits, order, "back 2", "high");
  for (let i = 0; i < 4; i++) permits.release();
  assert.deepEqual(order, ["holder", "back 1", "back 2", "new 1", "new 2"]);
});

Deno.test("Permits takes a free permit for a high-priority waiter without queueing it", () => {
  const permits = new Permits(1);
  const order: string[] = [];
  take(permits, order, "back", "high");
  assert.deepEqual(order, ["back"]);
  assert.equal(permits.waiting, 0);
});

Deno.test("Permits skips a withdrawn waiter, which takes no permit", () => {
  const permits = new Permits(1);
  const order: string[] = [];
  take(permits, order, "holder");
  const withdraw = take(permits, order, "gone", "high");
  take(permits, order, "next");
  assert.equal(permits.waiting, 2);
  withdraw();
  withdraw(); // twice is harmless
  assert.equal(permits.waiting, 1);
  permits.release();
  assert.deepEqual(order, ["holder", "next"]);
  permits.release();
  assert.equal(permits.free, 1, "the withdrawn waiter never held a permit");
});

Deno.test("Permits ignores withdrawing a request after it was granted", () => {
  const permits = new Permits(1);
  const order: string[] = [];
  const withdraw = take(permits, order, "a");
  withdraw();
  assert.equal(permits.free, 0, "a still holds its permit");
  permits.release();
  assert.equal(permits.free, 1);
});

Deno.test("Permits leaks no permit: after every holder released, all are free again", () => {
  const permits = new Permits(3);
  const order: string[] = [];
  for (let i = 0; i < 10; i++) take(permits, order, `${i}`, i % 3 === 0 ? "high" : "normal");
  assert.equal(order.length, 3);
  for (let i = 0; i < 10; i++) permits.release();
  assert.equal(order.length, 10);
  assert.equal(permits.free, 3);
  assert.equal(permits.waiting, 0);
});

Deno.test("Permits ignores extra releases beyond its permits", () => {
  const permits = new Permits(2);
  permits.release();
  permits.release();
  assert.equal(permits.free, 2);
  const order: string[] = [];
  for (const name of ["a", "b", "c"]) take(permits, order, name);
  assert.deepEqual(order, ["a", "b"], "still only two at once");
});

Deno.test("Permits without a bound never makes anyone wait", () => {
  const permits = new Permits(Infinity);
  const order: string[] = [];
  for (let i = 0; i < 1_000; i++) take(permits, order, `${i}`);
  assert.equal(order.length, 1_000);
  assert.equal(permits.waiting, 0);
  permits.release();
  assert.equal(permits.free, Infinity);
});
