import assert from "node:assert/strict";
import { JournalWriter } from "../_journal_writer.ts";
import type { UpdateJournal } from "../journal.ts";
import { fakeTime } from "./_clock.ts";
import { gate } from "./_helpers.ts";

type U = { update_id: number };

/** A journal whose `finish` does what `behave` says, recording every call. */
function journalWith(behave: (ids: number[], call: number) => Promise<void>) {
  const calls: number[][] = [];
  const journal: UpdateJournal<U> = {
    open: () => Promise.resolve({ unfinished: [], lastId: undefined }),
    store: () => Promise.resolve(),
    finish: (ids) => {
      calls.push([...ids]);
      return behave(ids, calls.length);
    },
    compact: () => Promise.resolve(),
  };
  return { journal, calls };
}

function writerFor(journal: UpdateJournal<U>) {
  const reports: { message: string; error: unknown }[] = [];
  const writer = new JournalWriter(journal, (message, error) => reports.push({ message, error }));
  return { writer, reports };
}

Deno.test("finished ids are written together 10 ms after the first, or at once by 100", async () => {
  using time = fakeTime();
  const { journal, calls } = journalWith(() => Promise.resolve());
  const { writer } = writerFor(journal);
  writer.finished(1);
  writer.finished(2);
  assert.equal(calls.length, 0);
  await time.tick(10);
  assert.deepEqual(calls, [[1, 2]]);
  for (let id = 3; id < 103; id++) writer.finished(id);
  assert.equal(calls.length, 2, "the 100th id writes at once");
  assert.equal(calls[1]!.length, 100);
  await writer.drain();
  assert.equal(time.pending, 0, "no timer outlives drain()");
});

Deno.test("a journal whose finish() throws synchronously is reported, and later ids are still written", async () => {
  using time = fakeTime();
  const { journal, calls } = journalWith((_ids, call) => {
    if (call === 1) throw new Error("sqlite: disk I/O error");
    return Promise.resolve();
  });
  const { writer, reports } = writerFor(journal);
  writer.finished(1);
  await time.tick(10); // would be an uncaught error in the timer before the fix
  assert.equal(reports.length, 1);
  assert.match(reports[0]!.message, /Could not record 1 finished/);
  assert.match(String(reports[0]!.error), /disk I\/O error/);
  writer.finished(2);
  await time.tick(1_000);
  assert.deepEqual(calls, [[1], [1, 2]], "the failed id goes out again with the next");
  assert.equal(writer.unrecorded, 0);
});

Deno.test("ids of a failed write are kept and written again, after a pause or at drain()", async (t) => {
  await t.step("after a pause", async () => {
    using time = fakeTime();
    const { journal, calls } = journalWith((_ids, call) =>
      call === 1 ? Promise.reject(new Error("KV unavailable")) : Promise.resolve()
    );
    const { writer, reports } = writerFor(journal);
    writer.finished(7);
    await time.tick(10);
    assert.equal(reports.length, 1);
    assert.equal(writer.unrecorded, 1);
    writer.finished(8);
    await time.tick(10);
    assert.equal(calls.length, 1, "a failing journal is not hammered every 10 ms");
    await time.tick(990);
    assert.deepEqual(calls, [[7], [7, 8]]);
    assert.equal(writer.unrecorded, 0);
  });
  await t.step("at drain()", async () => {
    using time = fakeTime();
    const { journal, calls } = journalWith((_ids, call) =>
      call === 1 ? Promise.reject(new Error("KV unavailable")) : Promise.resolve()
    );
    const { writer } = writerFor(journal);
    writer.finished(7);
    await time.tick(10);
    await writer.drain();
    assert.deepEqual(calls, [[7], [7]]);
    assert.equal(writer.unrecorded, 0);
    assert.equal(time.pending, 0);
  });
});

Deno.test("drain() gives up at its signal and says how many stay unrecorded", async () => {
  using time = fakeTime();
  const never = gate();
  const { journal } = journalWith(() => never.promise);
  const { writer, reports } = writerFor(journal);
  writer.finished(1);
  writer.finished(2);
  const deadline = new AbortController();
  const draining = writer.drain(deadline.signal);
  deadline.abort();
  await draining;
  assert.match(reports.at(-1)!.message, /Could not record .*before the stop ended/);
  never.open();
  assert.equal(time.pending, 0);
});

Deno.test("a failed compact() is reported, and a hanging one is abandoned at the signal", async () => {
  const { journal } = journalWith(() => Promise.resolve());
  const hang = gate();
  const failing = { ...journal, compact: () => Promise.reject(new Error("compact failed")) };
  const { writer, reports } = writerFor(failing);
  await writer.compact();
  assert.equal(reports.length, 1);
  assert.match(String(reports[0]!.error), /compact failed/);

  const hanging = writerFor({ ...journal, compact: () => hang.promise });
  const deadline = new AbortController();
  const compacting = hanging.writer.compact(deadline.signal);
  deadline.abort();
  await compacting;
  assert.match(hanging.reports[0]!.message, /before the stop ended/);
  hang.open();
});
