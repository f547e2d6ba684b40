import assert from "node:assert/strict";
import { createUpdateFetcher, createUpdateSupplier, PollingError, type Report } from "../mod.ts";
import { until } from "./_helpers.ts";

type U = { update_id: number };
const TOKEN = "123456:AAAA-secret-token-that-must-never-leak-0123456789";

/** A stand-in for `bot` whose getUpdates answers from a script. */
function scriptedBot(
  script: Array<U[] | Error | ((args: { offset: number; limit: number }) => U[])>,
) {
  const calls: { offset: number; limit: number; timeout: number }[] = [];
  return {
    calls,
    token: TOKEN,
    handleUpdate: async () => {},
    errorHandler: () => {},
    api: {
      getUpdates: (args: { offset: number; limit: number; timeout: number }) => {
        calls.push(args);
        const step = script.length > 1 ? script.shift()! : script[0]!;
        if (step instanceof Error) return Promise.reject(step);
        return Promise.resolve(typeof step === "function" ? step(args) : step);
      },
    },
  };
}

function apiError(code: number, description: string, parameters?: object) {
  return Object.assign(
    new Error(
      `Call to 'getUpdates' failed! (${code}: ${description}) https://api.telegram.org/bot${TOKEN}/getUpdates`,
    ),
    {
      error_code: code,
      description,
      ...(parameters ? { parameters } : {}),
    },
  );
}

const signal = () => new AbortController().signal;

Deno.test("the fetcher moves the offset past every batch and clamps the limit to 1..100", async () => {
  const bot = scriptedBot([[{ update_id: 10 }, { update_id: 11 }], [{ update_id: 12 }]]);
  const fetch = createUpdateFetcher(bot, { fetch: { timeout: 7 } });
  assert.deepEqual(await fetch(500, signal()), [{ update_id: 10 }, { update_id: 11 }]);
  assert.deepEqual(await fetch(0, signal()), [{ update_id: 12 }]);
  assert.deepEqual(bot.calls, [
    { timeout: 7, offset: 0, limit: 100 },
    { timeout: 7, offset: 12, limit: 1 },
  ]);
});

Deno.test("the fetcher retries network errors, 5xx and malformed answers without moving the offset", async () => {
  const reports: Report[] = [];
  const bot = scriptedBot([
    new Error(`fetch failed: https://api.telegram.org/bot${TOKEN}/getUpdates`),
    apiError(502, "Bad Gateway"),
    "not a list" as never,
    [{ message: {} } as never],
    [{ update_id: 1 }],
  ]);
  const fetch = createUpdateFetcher(bot, {
    retryInterval: 1,
    reporter: (r) => void reports.push(r),
  });
  assert.deepEqual(await fetch(100, signal()), [{ update_id: 1 }]);
  assert.equal(bot.calls.length, 5);
  assert.ok(bot.calls.every((call) => call.offset === 0));
  assert.equal(reports.length, 4);
  for (const report of reports) {
    assert.equal(report.source, "getUpdates");
    assert.ok(!report.message.includes(TOKEN), report.message);
    assert.ok(!String((report.error as Error).stack).includes(TOKEN));
    assert.ok(!String((report.error as Error).message).includes(TOKEN));
  }
});

Deno.test("the fetcher waits retry_after on 429, then goes on", async () => {
  const reports: Report[] = [];
  const bot = scriptedBot([apiError(429, "Too Many Requests: retry after 0", { retry_after: 0 }), [{
    update_id: 3,
  }]]);
  const fetch = createUpdateFetcher(bot, {
    retryInterval: 60_000,
    reporter: (r) => void reports.push(r),
  });
  // retryInterval is a minute: finishing at all shows retry_after was used.
  assert.deepEqual(await fetch(100, signal()), [{ update_id: 3 }]);
  assert.match(reports[0]!.message, /retrying in 0 ms/);
});

Deno.test("the fetcher ends at once on 401 with an error that hides the token", async () => {
  const bot = scriptedBot([apiError(401, "Unauthorized"), [{ update_id: 1 }]]);
  const fetch = createUpdateFetcher(bot, { silent: true });
  const error = await fetch(100, signal()).catch((e) => e);
  assert.ok(error instanceof PollingError);
  assert.equal(error.reason, "unauthorized");
  assert.equal(error.error_code, 401);
  assert.match(error.message, /rejected the bot token/);
  assert.equal(bot.calls.length, 1);
  const everything = `${error.message} ${error.stack} ${(error.cause as Error).message} ${
    (error.cause as Error).stack
  }`;
  assert.ok(!everything.includes(TOKEN));
  assert.ok(!everything.includes("AAAA-secret"));
});

Deno.test("the fetcher rides out 409 within maxConflictTime and ends with a clear error after it", async (t) => {
  await t.step("shorter than the grace window: goes on", async () => {
    const bot = scriptedBot([apiError(409, "Conflict"), apiError(409, "Conflict"), [{
      update_id: 5,
    }]]);
    const fetch = createUpdateFetcher(bot, {
      retryInterval: 1,
      maxConflictTime: 10_000,
      silent: true,
    });
    assert.deepEqual(await fetch(100, signal()), [{ update_id: 5 }]);
  });
  await t.step("longer than the grace window: PollingError", async () => {
    const bot = scriptedBot([apiError(409, "Conflict")]);
    const fetch = createUpdateFetcher(bot, { retryInterval: 5, maxConflictTime: 30, silent: true });
    const error = await fetch(100, signal()).catch((e) => e);
    assert.ok(error instanceof PollingError);
    assert.equal(error.reason, "conflict");
    assert.match(error.message, /Another instance is polling getUpdates/);
    assert.ok(bot.calls.length > 2);
  });
});

Deno.test("the fetcher gives up after maxRetryTime", async () => {
  const bot = scriptedBot([apiError(500, "Internal Server Error")]);
  const fetch = createUpdateFetcher(bot, { retryInterval: 5, maxRetryTime: 30, silent: true });
  const error = await fetch(100, signal()).catch((e) => e);
  assert.ok(error instanceof PollingError);
  assert.equal(error.reason, "retries");
  assert.match(
    error.message,
    /Could not fetch updates \(getUpdates\) for longer than maxRetryTime \(30 ms\)/,
  );
});

Deno.test("the fetcher stops retrying when its signal aborts", async () => {
  const bot = scriptedBot([apiError(500, "Internal Server Error")]);
  const fetch = createUpdateFetcher(bot, { retryInterval: 60_000, silent: true });
  const controller = new AbortController();
  const fetching = fetch(100, controller.signal);
  await until(() => bot.calls.length === 1, 10_000, "the first getUpdates to fail");
  controller.abort();
  await assert.rejects(fetching);
});

Deno.test("'handled' mode never confirms past the oldest unfinished update", async () => {
  let next = 1;
  const bot = scriptedBot([(args) => {
    // Like Telegram: everything from the offset on, up to the limit.
    const from = Math.max(args.offset, 1);
    const ids = Array.from({ length: Math.min(args.limit, 3) }, (_, i) => from + i);
    next = Math.max(next, ...ids.map((id) => id + 1));
    return ids.map((update_id) => ({ update_id }));
  }]);
  const supplier = createUpdateSupplier(bot, { confirm: "handled" });
  assert.deepEqual(await supplier.supply(3, signal()), [{ update_id: 1 }, { update_id: 2 }, {
    update_id: 3,
  }]);
  supplier.done(2);
  supplier.done(3);
  assert.equal(supplier.offset(), 1, "1 is unfinished");
  // Telegram sends 1..3 again: they are running or done, so they are skipped.
  const controller = new AbortController();
  const waiting = supplier.supply(3, controller.signal);
  await until(() => bot.calls.length === 2, 10_000, "Telegram to send 1..3 again");
  supplier.done(1);
  assert.deepEqual(await waiting, [{ update_id: 4 }, { update_id: 5 }, { update_id: 6 }]);
  assert.deepEqual(bot.calls.map((call) => call.offset), [0, 1, 4]);
});

Deno.test("confirm() sends one getUpdates whose offset is past everything finished", async () => {
  const bot = scriptedBot([[{ update_id: 8 }, { update_id: 9 }], []]);
  const supplier = createUpdateSupplier(bot, {});
  await supplier.supply(100, signal());
  supplier.done(8);
  await supplier.confirm();
  assert.deepEqual(bot.calls.at(-1), { offset: 9, limit: 1, timeout: 0 }, "9 is unfinished");
  supplier.done(9);
  await supplier.confirm();
  assert.deepEqual(bot.calls.at(-1), { offset: 10, limit: 1, timeout: 0 });
  const count = bot.calls.length;
  await supplier.confirm();
  assert.equal(bot.calls.length, count, "nothing new to confirm: no request");
});

Deno.test("the fetcher rejects bad options, naming the option and the value", async (t) => {
  const bot = scriptedBot([[]]);
  const cases: [string, object, string, RegExp][] = [
    [
      "fetch.timeout -5",
      { fetch: { timeout: -5 } },
      "RangeError",
      /'fetch.timeout' must be a number of at least 0: current value is -5/,
    ],
    ["retryInterval -1", { retryInterval: -1 }, "RangeError", /'retryInterval'.*-1/],
    [
      "retryInterval unknown",
      { retryInterval: "linear" },
      "TypeError",
      /'retryInterval' must be one of "exponential", "quadratic": current value is "linear"/,
    ],
    ["maxRetryTime NaN", { maxRetryTime: NaN }, "RangeError", /'maxRetryTime'.*NaN/],
    ["confirm unknown", { confirm: "never" }, "TypeError", /'confirm'.*"never"/],
    [
      "reporter not a function",
      { reporter: 5 },
      "TypeError",
      /'reporter' must be a function: current value is 5/,
    ],
  ];
  for (const [name, options, type, message] of cases) {
    await t.step(
      name,
      () =>
        assert.throws(() => createUpdateSupplier(bot, options as never), { name: type, message }),
    );
  }
  await t.step("'handled' needs the supplier", () => {
    assert.throws(() => createUpdateFetcher(bot, { confirm: "handled" }), {
      name: "TypeError",
      message: /'confirm'/,
    });
  });
});

Deno.test("journal failures are retried and reported as such; a journal TypeError ends at once", async (t) => {
  const journal = (
    store: () => Promise<void>,
    open = () => Promise.resolve({ unfinished: [], lastId: undefined }),
  ) => ({
    open,
    store,
    finish: () => Promise.resolve(),
    compact: () => Promise.resolve(),
  });
  await t.step("a passing store failure is retried, and getUpdates stats stay true", async () => {
    const reports: Report[] = [];
    let failures = 1;
    const bot = scriptedBot([[{ update_id: 1 }]]);
    const supplier = createUpdateSupplier(bot, {
      retryInterval: 1,
      reporter: (r) => void reports.push(r),
      journal: journal(() =>
        failures-- > 0 ? Promise.reject(new Error("disk busy")) : Promise.resolve()
      ),
    });
    assert.deepEqual(await supplier.supply(100, signal()), [{ update_id: 1 }]);
    assert.deepEqual(reports.map((r) => r.source), ["journal"]);
    assert.equal(supplier.stats().calls, 1, "journal calls are not getUpdates calls");
    assert.equal(supplier.stats().failures, 0);
  });
  await t.step("a journal that rejects its input ends the run", async () => {
    const bot = scriptedBot([[]]);
    const supplier = createUpdateSupplier(bot, {
      journal: journal(
        () => Promise.resolve(),
        () => Promise.reject(new TypeError("'last' is not a number")),
      ),
    });
    await assert.rejects(supplier.supply(100, signal()), { name: "TypeError", message: /'last'/ });
    assert.equal(bot.calls.length, 0, "no update was fetched without the journal");
  });
});

Deno.test("'handled' mode widens the limit past the updates it already took", async () => {
  const bot = scriptedBot([(args) => {
    const from = Math.max(args.offset, 1);
    return Array.from({ length: Math.min(args.limit, 10) }, (_, i) => ({ update_id: from + i }));
  }]);
  const supplier = createUpdateSupplier(bot, { confirm: "handled" });
  await supplier.supply(2, signal()); // takes 1, 2
  supplier.done(2); // 1 still runs: the offset stays at 1
  // Asked for 2 more: Telegram resends 1 and 2 first, so the limit must be 4.
  assert.deepEqual(await supplier.supply(2, signal()), [{ update_id: 3 }, { update_id: 4 }]);
  assert.deepEqual(bot.calls.at(-1), { timeout: 30, offset: 1, limit: 4 });
});
