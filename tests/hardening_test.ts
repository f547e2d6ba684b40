// Regressions found by an adversarial review: odd getUpdates answers, two
// pollers, a timed-out update in the durable modes, a silent network, an
// offline start, a long-lived abort signal.

import assert from "node:assert/strict";
import { memoryJournal } from "../journal.ts";
import { createUpdateSupplier, PollingError, type Report, run, type RunOptions } from "../mod.ts";
import { Bot } from "grammy";
import { FakeBotApi } from "../testing.ts";
import { botFor, Recorder } from "./_bot.ts";
import { flush, gate, sleep, until, within } from "./_helpers.ts";

type U = { update_id: number };
const signal = () => new AbortController().signal;

/** A plain bot whose getUpdates answers from `answers`, then long-polls until aborted. */
function answeringBot(answers: U[][], handle: (update: U) => Promise<void> = async () => {}) {
  const offsets: number[] = [];
  return {
    offsets,
    handleUpdate: handle,
    errorHandler: () => {},
    api: {
      getUpdates: (args: { offset: number; timeout: number }, signal: AbortSignal) => {
        offsets.push(args.offset);
        const answer = answers.shift();
        if (answer !== undefined || args.timeout === 0) return Promise.resolve(answer ?? []);
        return new Promise<U[]>((resolve) =>
          signal.addEventListener("abort", () => resolve([]), { once: true })
        );
      },
    },
  };
}

/**
 * Runs updates 1–3 with `runner`: update 1 hangs until `stuck` opens and
 * times out after 10 ms (noted in `timedOut`); 2 and 3 end at once.
 */
function runStuckFirst(runner: NonNullable<RunOptions<U>["runner"]>) {
  const stuck = gate();
  const timedOut: number[] = [];
  const bot = answeringBot(
    [[{ update_id: 1 }, { update_id: 2 }, { update_id: 3 }]],
    async (update) => {
      if (update.update_id === 1) await stuck.promise;
    },
  );
  const handle = run(bot, {
    runner,
    sink: {
      timeout: { milliseconds: 10, handler: (update) => void timedOut.push(update.update_id) },
    },
  });
  return { bot, stuck, timedOut, handle };
}

Deno.test("update ids that go backwards start a new sequence: taken, reported in one line, no stall", async () => {
  const reports: Report[] = [];
  const handled: number[] = [];
  const bot = answeringBot(
    [[{ update_id: 900 }, { update_id: 901 }], [{ update_id: 5 }, { update_id: 6 }], [{
      update_id: 7,
    }]],
    async (update) => void handled.push(update.update_id),
  );
  const handle = run(bot, { runner: { reporter: (report) => void reports.push(report) } });
  await until(() => handled.length === 5);
  await handle.stop();
  assert.deepEqual(handled, [900, 901, 5, 6, 7]);
  assert.deepEqual(bot.offsets.slice(0, 4), [0, 902, 7, 8], "the offset follows the new sequence");
  const lines = reports.filter((report) => /went backwards/.test(report.message));
  assert.equal(lines.length, 1);
  assert.match(lines[0]!.message, /5 after 901/);
});

Deno.test("an update_id twice in one answer is handled once", async () => {
  const handled: number[] = [];
  const bot = answeringBot(
    [[{ update_id: 1 }, { update_id: 2 }, { update_id: 2 }, { update_id: 3 }]],
    async (update) => void handled.push(update.update_id),
  );
  const handle = run(bot);
  await until(() => handled.length >= 3);
  await handle.stop();
  assert.deepEqual(handled, [1, 2, 3]);
});

Deno.test("'handled' mode: a timed-out update that still runs holds the offset until it ends", async (t) => {
  for (const durable of [false, true]) {
    await t.step(durable ? "with a journal" : "without a journal", async () => {
      const journal = memoryJournal<U>();
      const { bot, stuck, timedOut, handle } = runStuckFirst(
        durable ? { journal } : { confirm: "handled" },
      );
      await until(() => timedOut.length === 1 && handle.stats().handled === 2);
      if (durable) {
        // 2 and 3 are recorded finished; 1, timed out and still running, is not.
        await until(() => journal.size === 1, 5_000, "2 and 3 recorded");
        assert.deepEqual((await journal.open()).unfinished.map((u) => u.update_id), [1]);
      }
      // (That no poll confirms past 1 while it runs: the stop() test below.)
      stuck.open();
      await handle.stop();
      if (durable) assert.equal(journal.size, 0, "recorded once its task ended");
      else assert.equal(bot.offsets.at(-1), 4, "confirmed once its task ended");
    });
  }
});

Deno.test("stop() at its deadline reports a timed-out update that still runs; 'handled' mode confirms nothing past it", async (t) => {
  for (const confirm of ["handled", "fetched"] as const) {
    await t.step(confirm, async () => {
      const { bot, stuck, timedOut, handle } = runStuckFirst({ confirm });
      await until(() => timedOut.length === 1 && handle.stats().handled === 2);
      const result = await handle.stop({ timeout: 20 });
      stuck.open();
      // Its middleware had not ended: it is unfinished, and says whether it comes again.
      assert.deepEqual(result.unfinished.map((update) => update.update_id), [1]);
      const [again, gone] = confirm === "handled"
        ? [result.redelivered, result.lost]
        : [result.lost, result.redelivered];
      assert.deepEqual(again.map((update) => update.update_id), [1]);
      assert.deepEqual(gone, []);
      if (confirm === "handled") {
        // Every poll, the one that confirms on stop() included, left update 1 with Telegram.
        assert.ok(bot.offsets.length >= 2, String(bot.offsets));
        assert.ok(bot.offsets.every((offset) => offset <= 1), String(bot.offsets));
      }
    });
  }
});

Deno.test("run() refuses a bot that already runs in this process", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const first = run(bot, { runner: { fetch: { timeout: 1 } } });
  assert.throws(() => run(bot), {
    name: "Error",
    message: /Cannot run bot as it is already running in this process/,
  });
  await first.stop();
  const second = run(bot, { runner: { fetch: { timeout: 1 } } });
  assert.ok(second.isRunning(), "allowed once the first stopped");
  await second.stop();
});

Deno.test("two pollers on one token: the conflict ends a run after maxConflictTime despite successful polls", async () => {
  await using api = await FakeBotApi.start();
  const recorder = new Recorder();
  const bots = [botFor(api), botFor(api)];
  for (const bot of bots) bot.on("message", (ctx) => recorder.record(ctx, () => {}));
  const options = { runner: { fetch: { timeout: 1 }, maxConflictTime: 300, silent: true } };
  const handles = bots.map((bot) => run(bot, options));
  const ended = handles.map((handle) => handle.task()!.then(() => undefined, (error) => error));
  // Steady traffic: polls succeed between the 409s.
  let pushing = true;
  const traffic = (async () => {
    while (pushing) {
      api.pushMessages(5);
      await sleep(5);
    }
  })();
  const first = await within(Promise.race(ended), 10_000, "the end of a run");
  pushing = false;
  await traffic;
  assert.ok(first instanceof PollingError, String(first));
  assert.equal(first.reason, "conflict");
  assert.match(first.message, /409 Conflict.*maxConflictTime \(300 ms\)/);
  await Promise.all(handles.map((handle) => handle.stop()));
  console.log(
    `two pollers: ${recorder.total} runs of ${recorder.handled.size} updates, ${recorder.duplicates} handled twice before the conflict ended a run`,
  );
});

Deno.test("a Bot API call that goes silent is aborted after fetch.timeout + stallGrace, reported, and retried", async () => {
  const reports: Report[] = [];
  let inits = 0;
  let polls = 0;
  const handled: number[] = [];
  const silentUntilAborted = (signal: AbortSignal) =>
    new Promise<never>((_resolve, reject) =>
      signal.addEventListener("abort", () => reject(signal.reason), { once: true })
    );
  const bot = {
    init: (signal?: AbortSignal) => ++inits < 3 ? silentUntilAborted(signal!) : Promise.resolve(),
    handleUpdate: async (update: U) => void handled.push(update.update_id),
    errorHandler: () => {},
    api: {
      getUpdates: (_args: unknown, signal: AbortSignal) =>
        ++polls === 1
          ? silentUntilAborted(signal)
          : Promise.resolve(polls === 2 ? [{ update_id: 1 }] : []),
    },
  };
  const handle = run(bot, {
    runner: {
      fetch: { timeout: 0 },
      stallGrace: 20,
      retryInterval: 1,
      reporter: (report) => void reports.push(report),
    },
  });
  await until(() => handled.length === 1);
  await handle.stop();
  const stalls = reports.filter((report) => /got no answer within 20 ms/.test(report.message));
  assert.equal(stalls.length, 3, reports.map((report) => report.message).join("\n"));
  assert.match(stalls[0]!.message, /Could not get the bot's info \(getMe\), retrying/);
  assert.match(stalls[2]!.message, /Could not fetch updates \(getUpdates\), retrying/);
});

Deno.test("an offline start reports every failed getMe, and a rejected token ends it with PollingError", async () => {
  const offline = await FakeBotApi.start();
  const apiRoot = offline.apiRoot;
  await offline.close(); // nothing listens there any more
  const reports: Report[] = [];
  const bot = new Bot(offline.token, { client: { apiRoot } });
  const handle = run(bot, {
    runner: { stallGrace: 50, retryInterval: 5, reporter: (report) => void reports.push(report) },
  });
  await until(() => reports.length >= 3);
  await handle.stop();
  for (const report of reports) {
    assert.match(report.message, /^Could not get the bot's info \(getMe\), retrying in \d+ ms: /);
    assert.ok(!report.message.includes(offline.token));
  }

  await using api = await FakeBotApi.start({
    token: "111111:THE-REAL-TOKEN-abcdefghijklmnopqrstuvwxyz",
  });
  const wrong = botFor(api, "111111:A-WRONG-TOKEN-abcdefghijklmnopqrstuvwxyz");
  const error = await run(wrong, { runner: { reporter: () => {} } }).task()!.catch((e) => e);
  assert.ok(error instanceof PollingError);
  assert.equal(error.reason, "unauthorized");
  assert.equal(api.stats.requests.getUpdates ?? 0, 0, "it ended at getMe");
});

Deno.test("run(bot, { signal }) forgets its listener once the run ends", async () => {
  await using api = await FakeBotApi.start();
  const controller = new AbortController();
  const added: unknown[] = [];
  const removed: unknown[] = [];
  const signal = controller.signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((type: string, listener: EventListener, options?: unknown) => {
    added.push(listener);
    add(type, listener, options as AddEventListenerOptions);
  }) as typeof signal.addEventListener;
  signal.removeEventListener = ((type: string, listener: EventListener) => {
    removed.push(listener);
    remove(type, listener);
  }) as typeof signal.removeEventListener;
  for (let i = 0; i < 3; i++) {
    const handle = run(botFor(api), { signal, runner: { fetch: { timeout: 1 } } });
    await handle.stop();
    await flush();
  }
  assert.equal(added.length, 3);
  assert.deepEqual(removed, added, "every listener was removed");
});

Deno.test("a supplier's done() for a timed-out update counts only once its task ends", async () => {
  // The same rule, one level down: createUpdateSupplier never confirms an id not done.
  const bot = answeringBot([[{ update_id: 1 }, { update_id: 2 }]]);
  const supplier = createUpdateSupplier(bot, { confirm: "handled" });
  await supplier.supply(100, signal());
  supplier.done(2);
  assert.equal(supplier.offset(), 1);
  supplier.done(1);
  assert.equal(supplier.offset(), 3);
});

Deno.test("run() rejects misspelt option names, suggesting the right one", async (t) => {
  const bot = answeringBot([]);
  const cases: [string, unknown, string][] = [
    [
      "top level",
      { runnr: {} },
      "Cannot run bot as 'runnr' is not an option: did you mean 'runner'?",
    ],
    [
      "runner",
      { runner: { retryIntervall: 5 } },
      "Cannot create update fetcher as 'retryIntervall' is not an option: did you mean 'retryInterval'?",
    ],
    [
      "runner.fetch",
      { runner: { fetch: { timout: 5 } } },
      "Cannot create update fetcher as 'fetch.timout' is not an option: did you mean 'fetch.timeout'?",
    ],
    ["unrelated", { color: "red" }, "Cannot run bot as 'color' is not an option"],
  ];
  for (const [name, options, message] of cases) {
    await t.step(name, () => {
      assert.throws(() => run(bot, options as never), { name: "TypeError", message });
    });
  }
  assert.deepEqual(bot.offsets, [], "no request was sent");
});
