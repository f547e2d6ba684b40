// OpenTelemetry: what the runner records through @opentelemetry/api, read
// back from the SDK's in-memory exporters. Figures must match `stats()`,
// spans must carry the update and its outcome (and the key only as a hash
// unless asked), and without a provider nothing is recorded.

import assert from "node:assert/strict";
import type { Context } from "grammy";
import { createConcurrentSink, run, sequentialize, type TelemetryOptions } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";
import { runFromKv, webhookToKv } from "../kv_queue.ts";
import { message, webhookRequest } from "./_kv_queue.ts";
import { diag, DiagLogLevel, metrics, SpanKind, SpanStatusCode, trace } from "../_otel.ts";
import { hashOf, METRICS } from "../_telemetry.ts";
import { botFor } from "./_bot.ts";
import { gate, until } from "./_helpers.ts";
import { byAttribute, type ReadableSpan, TelemetryKit, total } from "./_otel.ts";

/** Chat of the update at `index`: six chats, so sequentialize() has work. */
const chatOf = (index: number) => 1000 + (index % 6);
const COUNT = 60;
/** Update ids whose handler throws, and the one that runs out of time. */
const fails = (id: number) => id % 10 === 3;
const SLOW = 5;

Deno.test("metrics match stats() and spans carry each update's id, type, outcome and hashed key", async (t) => {
  await using kit = new TelemetryKit();
  await using api = await FakeBotApi.start({
    seed: 11,
    faults: { serverError: 0.3, tooManyRequests: 0.2, retryAfter: 0.01 },
  });
  const bot = botFor(api);
  const slow = gate();
  bot.use(sequentialize((ctx: Context) => ctx.chat?.id));
  bot.on("message", async (ctx) => {
    const id = ctx.update.update_id;
    if (fails(id)) throw new Error(`boom ${id}`);
    if (id === SLOW) await slow.promise;
  });
  bot.catch(() => {});
  const ids = api.pushMessages(COUNT, { chatOf });
  const handle = run(bot, {
    runner: { fetch: { timeout: 1 }, retryInterval: 1, silent: true },
    sink: { concurrency: 4, timeout: { milliseconds: 50, handler: () => {} } },
    telemetry: kit.options,
  });
  await until(() => handle.stats().timedOut === 1, 10_000, "the slow update to time out");
  slow.open();
  await until(() => {
    const { handled, failed, timedOut } = handle.stats();
    return handled + failed + timedOut === COUNT;
  });
  const before = await kit.metrics(); // gauges report only while the runner runs
  const live = handle.stats();
  await handle.stop();
  const stats = handle.stats();
  const recorded = await kit.metrics();

  await t.step("counters equal stats()", () => {
    assert.equal(stats.fetched, COUNT);
    assert.equal(total(recorded, METRICS.fetched), stats.fetched);
    assert.equal(total(recorded, METRICS.handled), stats.handled);
    assert.equal(total(recorded, METRICS.failed), stats.failed);
    assert.equal(total(recorded, METRICS.timedOut), stats.timedOut);
    assert.deepEqual([stats.failed, stats.timedOut], [ids.filter(fails).length, 1]);
    assert.equal(total(recorded, METRICS.calls), stats.getUpdatesCalls);
    assert.ok(stats.getUpdatesFailures > 0, "the faults failed some polls");
    assert.equal(total(recorded, METRICS.failures), stats.getUpdatesFailures);
    const kinds = Object.keys(byAttribute(recorded, METRICS.failures, "error.type"));
    assert.ok(kinds.every((kind) => kind === "5xx" || kind === "429"), kinds.join());
    assert.equal(recorded.get(METRICS.handled)?.unit, "{update}");
    assert.equal(recorded.get(METRICS.calls)?.unit, "{call}");
  });

  await t.step("the duration histogram counts each outcome once, in seconds", () => {
    assert.equal(recorded.get(METRICS.duration)?.unit, "s");
    assert.deepEqual(byAttribute(recorded, METRICS.duration, "grammy.runner.outcome"), {
      handled: stats.handled,
      failed: stats.failed,
      timed_out: stats.timedOut,
    });
    // Every start took a slot: the first one, and one after each wait for a key.
    const keyWaits = total(recorded, METRICS.keyWait);
    assert.ok(keyWaits > 0, "same-chat updates waited for their key");
    assert.equal(total(recorded, METRICS.slotWait), COUNT + keyWaits);
  });

  await t.step("the gauges equal stats() while the runner runs", () => {
    assert.equal(total(before, METRICS.running), live.running);
    assert.equal(total(before, METRICS.waitingForKey), live.waitingForKey);
    assert.equal(total(before, METRICS.waitingForSlot), live.waitingForSlot);
    assert.equal(total(before, METRICS.pending), live.pending);
    assert.equal(total(before, METRICS.lag), 0);
    assert.equal(before.get(METRICS.lag)?.unit, "s");
  });

  const spans = kit.spans();
  await t.step("one span per update, with its id, type, outcome and hashed key", () => {
    const updates = spans.filter((span) => span.name === "handle message");
    assert.equal(updates.length, COUNT);
    for (const span of updates) {
      const id = span.attributes["grammy.update.id"] as number;
      const chat = chatOf(ids.indexOf(id));
      assert.equal(span.kind, SpanKind.CONSUMER);
      assert.equal(span.attributes["grammy.update.type"], "message");
      const outcome = id === SLOW ? "timed_out" : fails(id) ? "failed" : "handled";
      assert.equal(span.attributes["grammy.runner.outcome"], outcome, `update ${id}`);
      assert.equal(span.attributes["grammy.runner.key.hash"], hashOf(String(chat)));
      assert.ok(!Object.values(span.attributes).includes(String(chat)), "no raw chat id");
      assert.ok(!Object.values(span.attributes).includes(chat), "no raw chat id");
      if (outcome === "handled") assert.equal(span.status.code, SpanStatusCode.UNSET);
      else assert.equal(span.status.code, SpanStatusCode.ERROR);
      if (outcome === "failed") assert.match(span.status.message ?? "", new RegExp(`boom ${id}`));
    }
    assert.deepEqual(
      updates.map((span) => span.attributes["grammy.update.id"]).toSorted((a, b) =>
        Number(a) - Number(b)
      ),
      ids,
    );
  });

  await t.step("one span per getUpdates, with its offset and outcome", () => {
    const polls = spans.filter((span) => span.attributes["grammy.runner.call"] === "getUpdates");
    assert.equal(polls.length, stats.getUpdatesCalls);
    assert.ok(polls.every((span) => span.name === "getUpdates" && span.kind === SpanKind.CLIENT));
    const failed = polls.filter((span) => span.status.code === SpanStatusCode.ERROR);
    assert.equal(failed.length, stats.getUpdatesFailures);
    assert.equal(
      polls.reduce(
        (sum, span) => sum + Number(span.attributes["grammy.getupdates.updates"] ?? 0),
        0,
      ),
      COUNT,
    );
    assert.equal(polls.filter((span) => span.attributes["grammy.runner.aborted"]).length, 1);
    const confirms = spans.filter((span) => span.attributes["grammy.runner.call"] === "confirm");
    assert.ok(confirms.length >= 1);
    assert.equal(confirms.at(-1)!.attributes["grammy.getupdates.offset"], ids.at(-1)! + 1);
    assert.equal(spans.filter((span) => span.name === "getMe").length >= 1, true);
  });
});

/**
 * Runs `count` messages over `chats` chats through a bot that sequentializes
 * by chat, with `telemetry` if given, until all are handled; returns the
 * handle's count of handled updates.
 */
async function runMessages(count: number, chats: number, telemetry?: TelemetryOptions) {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  bot.use(sequentialize((ctx: Context) => ctx.chat?.id));
  let handled = 0;
  bot.on("message", () => void handled++);
  api.pushMessages(count, { chats });
  const runner = { fetch: { timeout: 1 } };
  const handle = run(bot, telemetry === undefined ? { runner } : { runner, telemetry });
  await until(() => handled === count);
  await handle.stop();
  return handle.stats().handled;
}

/** Runs three messages of chat 77 through a bot with the given telemetry; returns the update spans. */
async function spansOf(kit: TelemetryKit, keys: "raw" | "none"): Promise<ReadableSpan[]> {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  bot.use(sequentialize((ctx: Context) => [ctx.chat?.id, "shared"]));
  bot.on("message", () => {});
  api.pushMessages(3, { chatOf: () => 77 });
  const handle = run(bot, {
    runner: { fetch: { timeout: 1 } },
    telemetry: { ...kit.options, keys, attributes: { "grammy.bot": "test" } },
  });
  await until(() => handle.stats().handled === 3);
  await handle.stop();
  return kit.spans().filter((span) => span.name === "handle message");
}

Deno.test("telemetry.keys: 'raw' shows the keys themselves, 'none' shows none", async () => {
  {
    await using kit = new TelemetryKit();
    const spans = await spansOf(kit, "raw");
    assert.equal(spans.length, 3);
    for (const span of spans) {
      assert.deepEqual(span.attributes["grammy.runner.key"], ["77", "shared"]);
      assert.equal(span.attributes["grammy.runner.key.hash"], undefined);
      assert.equal(span.attributes["grammy.bot"], "test");
    }
  }
  {
    await using kit = new TelemetryKit();
    const spans = await spansOf(kit, "none");
    assert.equal(spans.length, 3);
    for (const span of spans) {
      assert.equal(span.attributes["grammy.runner.key"], undefined);
      assert.equal(span.attributes["grammy.runner.key.hash"], undefined);
    }
    const recorded = await kit.metrics();
    const points = recorded.get(METRICS.handled)!.points;
    assert.deepEqual(points.map((point) => point.attributes), [{ "grammy.bot": "test" }]);
  }
});

Deno.test("a sink built by hand records the same, gauges included (what the queue workers reuse)", async () => {
  await using kit = new TelemetryKit();
  const gates = new Map<number, ReturnType<typeof gate>>();
  const ordered = sequentialize((ctx: { chat: number }) => ctx.chat);
  type U = { update_id: number; chat: number };
  const sink = createConcurrentSink(
    {
      consume: (update: U) =>
        ordered({ update, chat: update.chat } as never, async () => {
          await gates.get(update.update_id)?.promise;
        }),
    },
    async () => {},
    { concurrency: 2, telemetry: kit.options },
  );
  // Chat 1: three updates (the first holds the chat); chats 2, 3 and 4: one each.
  const updates: U[] = [[1, 1], [2, 1], [3, 1], [4, 2], [5, 3], [6, 4]].map(([id, chat]) => ({
    update_id: id!,
    chat: chat!,
  }));
  for (const { update_id } of updates) gates.set(update_id, gate());
  void sink.handle(updates); // resolves once there is room again
  await until(() => sink.stats!().waitingForKey === 2, 5_000, "chat 1's later updates to wait");
  const stats = sink.stats!();
  const recorded = await kit.metrics();
  assert.deepEqual(
    [stats.running, stats.waitingForKey, stats.waitingForSlot, stats.pending],
    [2, 2, 2, 6],
  );
  assert.equal(total(recorded, METRICS.running), stats.running);
  assert.equal(total(recorded, METRICS.waitingForKey), stats.waitingForKey);
  assert.equal(total(recorded, METRICS.waitingForSlot), stats.waitingForSlot);
  assert.equal(total(recorded, METRICS.pending), stats.pending);
  assert.ok(total(recorded, METRICS.lag) >= 0);
  assert.equal(total(recorded, METRICS.fetched), 6);
  for (const entry of gates.values()) entry.open();
  await sink.idle!();
  await sink.close!();
  const after = await kit.metrics();
  assert.equal(total(after, METRICS.handled), 6);
  assert.equal(total(after, METRICS.keyWait), 2);
  assert.equal(total(after, METRICS.slotWait), 8);
});

Deno.test("with no provider nothing is recorded and the bot runs as before", async () => {
  await using kit = new TelemetryKit(); // exists, but neither passed nor registered
  assert.equal(metrics.getMeterProvider().constructor.name, "NoopMeterProvider");
  assert.equal(await runMessages(20, 3), 20);
  assert.equal((await kit.metrics()).size, 0);
  assert.equal(kit.spans().length, 0);
});

Deno.test("providers registered with @opentelemetry/api are used by default; spans: false records metrics only", async (t) => {
  await t.step("registered globally", async () => {
    await using kit = new TelemetryKit();
    assert.ok(metrics.setGlobalMeterProvider(kit.meterProvider));
    assert.ok(trace.setGlobalTracerProvider(kit.tracerProvider));
    try {
      await using api = await FakeBotApi.start();
      const bot = botFor(api);
      bot.on("message", () => {});
      api.pushMessages(5);
      const handle = run(bot, { runner: { fetch: { timeout: 1 } } });
      await until(() => handle.stats().handled === 5);
      await handle.stop();
    } finally {
      metrics.disable();
      trace.disable();
    }
    assert.equal(total(await kit.metrics(), METRICS.handled), 5);
    assert.equal(kit.spans().filter((span) => span.name === "handle message").length, 5);
  });
  await t.step("spans: false", async () => {
    await using kit = new TelemetryKit();
    await using api = await FakeBotApi.start();
    const bot = botFor(api);
    bot.on("message", () => {});
    api.pushMessages(5);
    const handle = run(bot, {
      runner: { fetch: { timeout: 1 } },
      telemetry: { ...kit.options, spans: false },
    });
    await until(() => handle.stats().handled === 5);
    await handle.stop();
    assert.equal(total(await kit.metrics(), METRICS.handled), 5);
    assert.equal(kit.spans().length, 0);
  });
});

Deno.test("a bad telemetry option is rejected, naming the option and the value", () => {
  const bot = {
    handleUpdate: async () => {},
    errorHandler: () => {},
    api: { getUpdates: async () => [] },
  };
  const cases: [unknown, RegExp][] = [
    [5, /Cannot run bot as 'telemetry' must be an object: current value is 5/],
    [
      { keys: "plain" },
      /'telemetry.keys' must be one of "hash", "raw", "none": current value is "plain"/,
    ],
    [{ spans: 1 }, /'telemetry.spans' must be one of true, false: current value is 1/],
    [
      { meterProvider: {} },
      /'telemetry.meterProvider' must have a getMeter function: current value is an object/,
    ],
    [
      { tracerProvider: null },
      /'telemetry.tracerProvider' must have a getTracer function: current value is null/,
    ],
    [
      { atributes: {} },
      /'telemetry.atributes' is not an option: did you mean 'telemetry.attributes'\?/,
    ],
    [{ attributes: [] }, /'telemetry.attributes' must be an object: current value is \[\]/],
  ];
  for (const [telemetry, message] of cases) {
    assert.throws(() => run(bot, { telemetry: telemetry as never }), {
      name: "TypeError",
      message,
    });
  }
  assert.throws(
    () =>
      createConcurrentSink({ consume: async () => {} }, async () => {}, {
        telemetry: { keys: 1 as never },
      }),
    { name: "TypeError", message: /^Cannot create sink as 'telemetry.keys' must be one of/ },
  );
});

Deno.test("hashOf is stable and keeps the key's text out", () => {
  assert.equal(hashOf("12345"), hashOf("12345"));
  assert.notEqual(hashOf("12345"), hashOf("12346"));
  assert.match(hashOf("12345"), /^[0-9a-f]{14}$/);
  assert.ok(!hashOf("12345").includes("12345"));
});

Deno.test("a provider that throws never breaks the bot: its errors go to OpenTelemetry's diag logger", async (t) => {
  const throwing = () => {
    throw new Error("the backend is down");
  };
  const instrument = { add: throwing, record: throwing };
  const brokenMeter = {
    createCounter: () => instrument,
    createHistogram: () => instrument,
    createObservableGauge: () => ({}),
    addBatchObservableCallback: throwing,
    removeBatchObservableCallback: throwing,
  };
  const cases: [string, TelemetryOptions][] = [
    ["instruments that throw", {
      meterProvider: { getMeter: () => brokenMeter } as never,
      tracerProvider: { getTracer: () => ({ startSpan: throwing }) } as never,
    }],
    ["a provider that refuses a meter", {
      meterProvider: { getMeter: throwing } as never,
      spans: false,
    }],
    ["a meter that refuses instruments", {
      meterProvider: { getMeter: () => ({ createCounter: throwing }) } as never,
      spans: false,
    }],
  ];
  for (const [name, telemetry] of cases) {
    await t.step(name, async () => {
      const logged: string[] = [];
      const log = (message: string) => void logged.push(message);
      diag.setLogger(
        { error: log, warn: log, info: () => {}, debug: () => {}, verbose: () => {} },
        { logLevel: DiagLogLevel.ERROR, suppressOverrideMessage: true },
      );
      try {
        assert.equal(await runMessages(10, 2, telemetry), 10);
      } finally {
        diag.disable();
      }
      assert.ok(logged.length > 0);
      assert.ok(
        logged.every((line) =>
          /^@grammyx\/runner could not record .*the backend is down/.test(line)
        ),
        logged.join("\n"),
      );
    });
  }
});

Deno.test("with OTEL_DENO=true, Deno's built-in exporter sends the runner's metrics and spans over OTLP", async () => {
  const received: { path: string; body: string }[] = [];
  await using collector = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      received.push({ path: new URL(request.url).pathname, body: await request.text() });
      return Response.json({});
    },
  );
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      new URL("./fixtures/otel_bot.ts", import.meta.url).pathname,
    ],
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.addr.port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_DENO_CONSOLE: "ignore",
      OTEL_SERVICE_NAME: "otel-test-bot",
      NO_COLOR: "1",
      NODE_OPTIONS: "--no-warnings",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  assert.equal(output.code, 0, text.decode(output.stderr));
  assert.match(text.decode(output.stdout), /handled 10/);
  const metricsBody = received.filter(({ path }) => path === "/v1/metrics").map(({ body }) => body)
    .join("\n");
  for (const name of [METRICS.fetched, METRICS.handled, METRICS.duration, METRICS.calls]) {
    assert.ok(metricsBody.includes(`"${name}"`), `${name} exported`);
  }
  assert.ok(metricsBody.includes('"@grammyx/runner"'), "the instrumentation scope");
  type OtlpSpan = {
    name: string;
    spanId: string;
    parentSpanId?: string;
    attributes: { key: string; value: { stringValue?: string } }[];
  };
  const spans: OtlpSpan[] = received.filter(({ path }) => path === "/v1/traces").flatMap((
    { body },
  ) =>
    JSON.parse(body).resourceSpans.flatMap((resource: { scopeSpans: { spans: OtlpSpan[] }[] }) =>
      resource.scopeSpans.flatMap((scope) => scope.spans)
    )
  );
  const updates = spans.filter((span) => span.name === "handle message");
  assert.equal(updates.length, 10);
  for (const span of updates) {
    const key = span.attributes.find((attribute) => attribute.key === "grammy.runner.key.hash");
    assert.equal(key?.value.stringValue, hashOf("42"));
    // ctx.reply()'s request, traced by Deno, nests under the update's span.
    assert.ok(spans.some((child) => child.parentSpanId === span.spanId), "a child span");
  }
  const polls = spans.filter((span) => span.name === "getUpdates");
  assert.ok(polls.length > 0);
  assert.ok(polls.some((poll) => spans.some((child) => child.parentSpanId === poll.spanId)));
});

Deno.test("examples/metrics.ts serves the runner's metrics to Prometheus on /metrics", async () => {
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = free.addr.port;
  free.close();
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      "--allow-sys",
      new URL("../examples/metrics.ts", import.meta.url).pathname,
      `--port=${port}`,
    ],
    env: { NO_COLOR: "1", NODE_OPTIONS: "--no-warnings", BOT_TOKEN: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  const stdout = text.decode(output.stdout);
  assert.equal(output.code, 0, text.decode(output.stderr));
  assert.match(stdout, /^grammy_runner_updates_fetched_total\{[^}]*\} 2000$/m);
  assert.match(stdout, /^grammy_runner_updates_handled_total\{[^}]*\} 1800$/m);
  assert.match(stdout, /^grammy_runner_updates_failed_total\{[^}]*\} 200$/m);
  assert.match(stdout, /^grammy_runner_updates_pending\{[^}]*\} 0$/m);
  assert.match(
    stdout,
    /^grammy_runner_update_duration_count\{[^}]*outcome="handled"[^}]*\} 1800$/m,
  );
});

Deno.test("getUpdates failures are counted by kind: 409 and malformed answers too", async () => {
  await using kit = new TelemetryKit();
  await using api = await FakeBotApi.start({ seed: 5, faults: { malformed: 0.4 } });
  const bot = botFor(api);
  let handled = 0;
  bot.on("message", () => void handled++);
  api.conflictFor(150); // another poller, for a moment
  const ids = api.pushMessages(30);
  const handle = run(bot, {
    runner: { fetch: { timeout: 0 }, retryInterval: 1, silent: true },
    sink: { concurrency: 5 },
    telemetry: kit.options,
  });
  await until(() => handled === ids.length, 15_000, "every update");
  await handle.stop();
  const stats = handle.stats();
  const kinds = byAttribute(await kit.metrics(), METRICS.failures, "error.type");
  assert.ok((kinds["409"] ?? 0) > 0, JSON.stringify(kinds));
  assert.ok((kinds.malformed ?? 0) > 0, JSON.stringify(kinds));
  assert.ok(
    Object.keys(kinds).every((kind) => ["409", "malformed", "network"].includes(kind)),
    JSON.stringify(kinds),
  );
  assert.equal(
    Object.values(kinds).reduce((sum, count) => sum + count, 0),
    stats.getUpdatesFailures,
  );
});

Deno.test("runFromKv records with the telemetry providers it is given, like run()", async () => {
  await using kit = new TelemetryKit();
  await using api = await FakeBotApi.start();
  using kv = await Deno.openKv(":memory:");
  const bot = botFor(api);
  bot.on("message", (ctx) => {
    if (ctx.update.update_id % 4 === 0) throw new Error("boom");
  });
  bot.catch(() => {});
  const worker = runFromKv(bot, kv, { pollMilliseconds: 10, telemetry: kit.options });
  const ingress = webhookToKv(kv);
  for (let id = 1; id <= 12; id++) {
    const response = await ingress(webhookRequest(JSON.stringify(message(id, 100 + (id % 3)))));
    assert.equal(response.status, 200);
  }
  await until(() => worker.stats().handled + worker.stats().failed === 12, 10_000, "12 outcomes");
  const recorded = await kit.metrics();
  await worker.stop();
  assert.deepEqual([worker.stats().handled, worker.stats().failed], [9, 3]);
  assert.equal(total(recorded, METRICS.handled), 9);
  assert.equal(total(recorded, METRICS.failed), 3);
  const spans = kit.spans().filter((span) => span.name === "handle message");
  assert.equal(spans.length, 12, "a span per update");
});

Deno.test("runFromKv rejects a telemetry option that is not an object, naming it", async () => {
  using kv = await Deno.openKv(":memory:");
  await using api = await FakeBotApi.start();
  assert.throws(() => runFromKv(botFor(api), kv, { telemetry: 5 as never }), /'telemetry'/);
});
