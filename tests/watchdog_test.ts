// The stall watchdog against a real network black hole: a TCP server that
// accepts connections and never answers, then starts answering. The runner
// must report within fetch.timeout + stallGrace (not grammY's 500 s client
// timeout), recover by itself, and count the stalls in its telemetry.

import assert from "node:assert/strict";
import { Bot } from "grammy";
import { type Report, run } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";
import { METRICS } from "../_telemetry.ts";
import { BlackHole } from "./_black_hole.ts";
import { until, within } from "./_helpers.ts";
import { byAttribute, TelemetryKit, total } from "./_otel.ts";

Deno.test("a getUpdates into a black hole is aborted after fetch.timeout + stallGrace, reported, and the runner recovers once answers come", async () => {
  await using kit = new TelemetryKit();
  await using api = await FakeBotApi.start();
  await using hole = new BlackHole(Number(new URL(api.apiRoot).port));
  hole.answer();
  const bot = new Bot(api.token, { client: { apiRoot: hole.root } });
  let handled = 0;
  bot.on("message", () => void handled++);
  await bot.init(); // getMe through the proxy while it answers
  hole.silence();

  const reports: { at: number; report: Report }[] = [];
  const ids = api.pushMessages(3);
  const startedAt = performance.now();
  const handle = run(bot, {
    runner: {
      fetch: { timeout: 1 },
      stallGrace: 300,
      retryInterval: 5,
      reporter: (report) => void reports.push({ at: performance.now(), report }),
    },
    telemetry: kit.options,
  });
  await until(() => reports.length > 0, 10_000, "a report of the stalled call");
  const first = reports[0]!;
  assert.match(
    first.report.message,
    /^Could not fetch updates \(getUpdates\), retrying in \d+ ms: StalledCall: fetch updates \(getUpdates\) got no answer within 1300 ms/,
  );
  const waited = first.at - startedAt;
  // Timers may fire a little early; 500 s (grammY's own timeout) is what the watchdog prevents.
  assert.ok(waited >= 1_250 && waited < 10_000, `reported after ${Math.round(waited)} ms`);
  assert.equal(handled, 0);

  hole.answer();
  await until(() => handled === 3, 15_000, "the updates once the server answers");
  await handle.stop();
  assert.ok(hole.swallowed >= 1);
  assert.equal(api.offset(), ids.at(-1)! + 1, "confirmed");

  const stalls = reports.filter(({ report }) =>
    /got no answer within 1300 ms/.test(report.message)
  );
  const stats = handle.stats();
  assert.equal(stats.getUpdatesFailures, stalls.length);
  const recorded = await kit.metrics();
  assert.deepEqual(byAttribute(recorded, METRICS.stalls, "grammy.runner.call"), {
    getUpdates: stalls.length,
  });
  assert.deepEqual(byAttribute(recorded, METRICS.failures, "error.type"), {
    network: stalls.length,
  });
  assert.equal(total(recorded, METRICS.calls), stats.getUpdatesCalls);
  assert.equal(total(recorded, METRICS.handled), 3);
});

Deno.test("getMe at start and the confirming getUpdates at stop() into a black hole each end after stallGrace", async () => {
  await using kit = new TelemetryKit();
  await using api = await FakeBotApi.start();
  await using hole = new BlackHole(Number(new URL(api.apiRoot).port));
  const bot = new Bot(api.token, { client: { apiRoot: hole.root } });
  let handled = 0;
  bot.on("message", () => void handled++);
  const reports: Report[] = [];
  const ids = api.pushMessages(3);
  const handle = run(bot, {
    runner: {
      fetch: { timeout: 1 },
      stallGrace: 200,
      retryInterval: 5,
      reporter: (report) => void reports.push(report),
    },
    telemetry: kit.options,
  });
  await until(() => reports.length > 0, 10_000, "a report of the stalled getMe");
  assert.match(
    reports[0]!.message,
    /^Could not get the bot's info \(getMe\), retrying in \d+ ms: StalledCall: get the bot's info \(getMe\) got no answer within 200 ms/,
  );
  hole.answer();
  await until(() => handled === 3, 15_000, "the updates once the server answers");
  await until(() => api.longPolling(), 10_000, "the next long poll");
  hole.silence(); // the long poll is cut; from now on nothing answers
  const before = reports.length;
  await within(handle.stop(), 10_000, "stop() with a silent confirming call");
  const atStop = reports.slice(before).map((report) => report.message);
  const offset = ids.at(-1)! + 1;
  assert.equal(
    atStop.filter((message) =>
      new RegExp(
        `Could not confirm updates below ${offset} \\(attempt \\d of 3\\): StalledCall: confirm updates \\(getUpdates\\) got no answer within 200 ms`,
      )
        .test(message)
    ).length,
    3,
    atStop.join("\n"),
  );
  assert.ok(atStop.some((message) => message.includes(`below ${offset} in 3 attempts`)));
  const stalls = byAttribute(await kit.metrics(), METRICS.stalls, "grammy.runner.call");
  assert.ok((stalls.getMe ?? 0) >= 1, JSON.stringify(stalls));
  assert.equal(stalls.confirm, 3);
});
