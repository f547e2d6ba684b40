import assert from "node:assert/strict";
import { UpdateOffsets } from "../_offsets.ts";

const updates = (...ids: number[]) => ids.map((update_id) => ({ update_id }));
const ids = (list: { update_id: number }[]) => list.map((update) => update.update_id);

/** Selects and takes an answer, as the fetcher does after a poll sent with `offset`. */
function poll(offsets: UpdateOffsets, offset: number, ...answer: number[]) {
  offsets.send(offset);
  offsets.confirm(offset);
  const selected = offsets.select(updates(...answer), offset);
  offsets.take(selected);
  return selected;
}

Deno.test("select() picks what is new in a getUpdates answer", async (t) => {
  // [what was taken before, the offset sent, the answer, fresh ids, skipped, restartedAt]
  const table: [string, number[], number, number[], number[], number, number | undefined][] = [
    ["a first answer", [], 0, [5, 6, 7], [5, 6, 7], 0, undefined],
    ["an empty answer", [5], 6, [], [], 0, undefined],
    ["re-sent ids of the 'handled' mode", [5, 6, 7], 5, [5, 6, 7, 8], [8], 3, undefined],
    ["an id twice in one answer", [], 0, [5, 6, 6, 7], [5, 6, 7], 1, undefined],
    ["a re-sent id twice", [5], 5, [5, 5, 6], [6], 2, undefined],
    ["gaps (allowed_updates filters some)", [5], 6, [9, 12], [9, 12], 0, undefined],
    ["ids going backwards: a new sequence", [900, 901], 902, [17, 18], [17, 18], 0, 17],
  ];
  for (const [name, before, offset, answer, fresh, skipped, restartedAt] of table) {
    await t.step(name, () => {
      const offsets = new UpdateOffsets();
      if (before.length > 0) poll(offsets, 0, ...before);
      const selected = offsets.select(updates(...answer), offset);
      assert.deepEqual(ids(selected.fresh), fresh);
      assert.equal(selected.skipped, skipped);
      assert.equal(selected.restartedAt, restartedAt);
    });
  }
});

Deno.test("select() takes nothing: a store that fails leaves the books as they were", () => {
  const offsets = new UpdateOffsets();
  offsets.select(updates(1, 2, 3), 0);
  assert.equal(offsets.lastTaken, -1);
  assert.equal(offsets.unfinished, 0);
  assert.deepEqual(ids(offsets.select(updates(1, 2, 3), 0).fresh), [1, 2, 3]);
});

Deno.test("the watermark is the oldest unfinished update, whatever order they finish in", () => {
  const offsets = new UpdateOffsets();
  poll(offsets, 0, 10, 11, 12, 13);
  assert.equal(offsets.watermark(), 10);
  assert.equal(offsets.finish(12), false, "not the oldest: the watermark stays");
  assert.equal(offsets.watermark(), 10);
  assert.equal(offsets.finish(10), true);
  assert.equal(offsets.watermark(), 11);
  assert.equal(offsets.finish(11), true);
  assert.equal(offsets.watermark(), 13, "12 finished before");
  assert.equal(offsets.finish(13), true);
  assert.equal(offsets.watermark(), 14, "all done: the id after the last taken");
  assert.equal(offsets.finish(13), false, "finishing twice changes nothing");
  assert.equal(offsets.finish(99), false, "an id never taken changes nothing");
  assert.equal(offsets.unfinished, 0);
});

Deno.test("one update that never finishes keeps only the updates in flight in memory", () => {
  const offsets = new UpdateOffsets();
  poll(offsets, 0, 1);
  // 1 never finishes; a million more come and finish.
  for (let first = 2; first < 1_000_002; first += 100) {
    const batch = Array.from({ length: 100 }, (_, i) => first + i);
    poll(offsets, offsets.watermark(), ...batch);
    for (const id of batch) offsets.finish(id);
  }
  assert.equal(offsets.unfinished, 1);
  assert.equal(offsets.watermark(), 1);
  assert.equal(offsets.lastTaken, 1_000_001);
  // Telegram sends everything from the watermark again; none of it is new.
  const again = offsets.select(updates(1, 2, 3, 1_000_001), 1);
  assert.deepEqual(ids(again.fresh), []);
  assert.equal(again.skipped, 4);
});

Deno.test("ids going backwards start a new sequence; the old one's unfinished updates count as lost", () => {
  const offsets = new UpdateOffsets();
  poll(offsets, 0, 700, 701);
  offsets.finish(700);
  // A week without updates: Telegram picks the next id at random, here lower.
  const selected = poll(offsets, 702, 40, 41);
  assert.equal(selected.restartedAt, 40);
  assert.deepEqual(ids(selected.fresh), [40, 41]);
  assert.equal(offsets.lastTaken, 41);
  assert.equal(offsets.watermark(), 40, "only the new sequence holds the offset");
  assert.equal(offsets.unfinished, 3, "701 is still running");
  assert.equal(offsets.isUnconfirmed(701), false, "Telegram will not send 701 again");
  assert.equal(offsets.isUnconfirmed(40), true);
  assert.equal(offsets.finish(701), false);
  assert.equal(offsets.unfinished, 2);
  // The sequence goes on from there.
  assert.deepEqual(ids(poll(offsets, 42, 42).fresh), [42]);
});

Deno.test("an update is unconfirmed until an offset above it was sent, even if that poll failed", () => {
  const offsets = new UpdateOffsets();
  poll(offsets, 0, 1, 2);
  assert.equal(offsets.isUnconfirmed(1), true);
  offsets.send(3); // the next poll is on its way, its answer never comes
  assert.equal(offsets.isUnconfirmed(1), false);
  assert.equal(offsets.confirmed, 0, "not known to be confirmed");
});

Deno.test("resume() takes a journal's updates in order and counts ids up to its last as taken", () => {
  const offsets = new UpdateOffsets();
  const replay = offsets.resume(updates(9, 7, 8), 12);
  assert.deepEqual(ids(replay), [7, 8, 9]);
  assert.equal(offsets.lastTaken, 12);
  assert.equal(offsets.watermark(), 7);
  // Ids the journal counted as taken are skipped when Telegram sends them again.
  assert.deepEqual(ids(offsets.select(updates(9, 10, 11, 12, 13), 7).fresh), [13]);
});
