// stop() and its deadline: what it waits for, what bounds it, and what it
// says about the updates it could not finish.

import assert from "node:assert/strict";
import { memoryJournal } from "../journal.ts";
import { type Report, run, type RunOptions } from "../mod.ts";
import { flush, gate, isPending, sleep, until, within } from "./_helpers.ts";

type U = { update_id: number };

/**
 * A bot whose getUpdates hands out `updates` once, then long-polls until
 * aborted (a call with `timeout: 0` answers at once); `blackHole` makes every
 * later call wait for its signal, like a connection that went silent.
 */
function scriptedBot(updates: U[], handle: (update: U) => Promise<void>) {
  const polls: { offset: number; signal: AbortSignal }[] = [];
  let pending = [...updates];
  const bot = {
    handleUpdate: handle,
    errorHandler: () => {},
    blackHole: false,
    api: {
      getUpdates: (args: { offset: number; timeout: number }, signal: AbortSignal) => {
        polls.push({ offset: args.offset, signal });
        const batch = pending;
        pending = [];
        if (!bot.blackHole && (batch.length > 0 || args.timeout === 0)) {
          return Promise.resolve(batch);
        }
        return new Promise<U[]>((resolve, reject) => {
          signal.addEventListener("abort", () => {
            if (bot.blackHole) reject(new Error("The connection went silent and was aborted"));
            else resolve([]);
          }, { once: true });
        });
      },
    },
  };
  return { bot, polls };
}

const ids = (updates: U[]) => updates.map((update) => update.update_id);

Deno.test("stop({ timeout }) with no real deadline waits for the running update", async (t) => {
  for (const timeout of [Infinity, 2 ** 31, 2 ** 40]) {
    await t.step(`timeout: ${timeout}`, async () => {
      const stuck = gate();
      let finished = 0;
      const { bot } = scriptedBot([{ update_id: 1 }], async () => {
        await stuck.promise;
        finished++;
      });
      const handle = run(bot);
      await until(() => handle.stats().running === 1);
      const stopping = handle.stop({ timeout });
      await sleep(30); // a timer of 2^31 ms or more fired after ~1 ms before the fix
      assert.ok(await isPending(stopping), "stop() must wait for the update");
      stuck.open();
      const result = await stopping;
      assert.equal(finished, 1);
      assert.deepEqual(result, { unfinished: [], lost: [], redelivered: [] });
    });
  }
});

Deno.test("the stop deadline bounds the confirming getUpdates on a connection that went silent", async () => {
  const reports: Report[] = [];
  const { bot, polls } = scriptedBot([{ update_id: 1 }, { update_id: 2 }], async () => {});
  const handle = run(bot, { runner: { reporter: (report) => void reports.push(report) } });
  await until(() => handle.stats().handled === 2);
  bot.blackHole = true;
  const result = await within(handle.stop({ timeout: 200 }), 5_000, "stop({ timeout: 200 })");
  assert.deepEqual(result.unfinished, []);
  const confirming = polls.at(-1)!;
  assert.equal(confirming.offset, 3, "the last call confirms 1 and 2");
  assert.ok(confirming.signal.aborted, "the confirming call was aborted at the deadline");
  assert.ok(
    reports.some((report) =>
      /Could not confirm updates below 3 before the stop ended/.test(report.message)
    ),
    reports.map((report) => report.message).join("\n"),
  );
});

Deno.test("the stop deadline bounds the journal's last writes", async () => {
  const reports: Report[] = [];
  const hang = gate();
  const journal = memoryJournal<U>();
  const { bot } = scriptedBot([{ update_id: 1 }], async () => {});
  const options: RunOptions<U> = {
    runner: {
      journal: { ...journal, finish: () => hang.promise, compact: () => hang.promise },
      reporter: (report) => void reports.push(report),
    },
  };
  const handle = run(bot, options);
  await until(() => handle.stats().handled === 1);
  await within(handle.stop({ timeout: 100 }), 5_000, "stop({ timeout: 100 })");
  const messages = reports.map((report) => report.message).join("\n");
  assert.match(
    messages,
    /Could not record 1 finished updates in the journal before the stop ended/,
  );
  hang.open();
});

Deno.test("a stop({ timeout }) after a stop() without one brings the deadline forward", async () => {
  const stuck = gate();
  const { bot } = scriptedBot([{ update_id: 1 }, { update_id: 2 }], async (update) => {
    if (update.update_id === 2) await stuck.promise;
  });
  const handle = run(bot, { runner: { confirm: "handled" } });
  await until(() => handle.stats().handled === 1);
  const first = handle.stop();
  await flush();
  const second = handle.stop({ timeout: 50 });
  assert.equal(first, second, "the same stop");
  const result = await within(second, 5_000, "stop({ timeout: 50 })");
  assert.deepEqual(ids(result.unfinished), [2]);
  assert.deepEqual(ids(result.redelivered), [2]);
  assert.deepEqual(result.lost, []);
  // A later, longer timeout never pushes the deadline back (nothing to test
  // once resolved); the stuck update still ends.
  stuck.open();
});

Deno.test("with a journal, an update unfinished at the deadline is redelivered, not lost", async () => {
  const stuck = gate();
  const journal = memoryJournal<U>();
  const { bot } = scriptedBot([{ update_id: 1 }, { update_id: 2 }], async (update) => {
    if (update.update_id === 1) await stuck.promise;
  });
  const handle = run(bot, { runner: { journal } });
  await until(() => handle.stats().handled === 1);
  const result = await handle.stop({ timeout: 50 });
  assert.deepEqual(ids(result.unfinished), [1]);
  assert.deepEqual(ids(result.redelivered), [1]);
  assert.deepEqual(result.lost, []);
  assert.deepEqual(ids((await journal.open()).unfinished), [1], "the journal still holds it");
  // If the process lives on, the late end is still recorded: 1 will not run again.
  stuck.open();
  await until(() => journal.size === 0);
});
