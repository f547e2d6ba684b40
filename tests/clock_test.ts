import assert from "node:assert/strict";
import { delay } from "../_async.ts";
import { MAX_DELAY, startTimer } from "../_clock.ts";
import { fakeTime } from "./_clock.ts";
import { isPending } from "./_helpers.ts";

Deno.test("the fake clock fires timers in order only when time moves", async () => {
  using time = fakeTime();
  const fired: string[] = [];
  const late = delay(30).then(() => fired.push("late"));
  const early = delay(10).then(() => fired.push("early"));
  assert.equal(await isPending(early), true);
  await time.tick(10);
  assert.deepEqual(fired, ["early"]);
  assert.equal(await isPending(late), true);
  await time.tick(20);
  assert.deepEqual(fired, ["early", "late"]);
  assert.equal(time.pending, 0);
});

Deno.test("a delay beyond what a timer can count never fires and leaves no timer", async () => {
  using time = fakeTime();
  for (const milliseconds of [MAX_DELAY + 1, 2 ** 31, Infinity]) {
    assert.equal(startTimer(() => {}, milliseconds), undefined);
    const stop = new AbortController();
    const waiting = delay(milliseconds, stop.signal);
    assert.equal(time.pending, 0);
    assert.equal(await isPending(waiting), true);
    stop.abort();
    await waiting;
  }
  // The limit itself still counts.
  const id = startTimer(() => {}, MAX_DELAY);
  assert.notEqual(id, undefined);
  assert.equal(time.nextIn, MAX_DELAY);
});

Deno.test("a delay aborted early clears its timer", async () => {
  using time = fakeTime();
  const stop = new AbortController();
  const waiting = delay(1_000, stop.signal);
  assert.equal(time.pending, 1);
  stop.abort();
  await waiting;
  assert.equal(time.pending, 0);
});
