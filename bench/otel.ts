/**
 * `deno task --cwd bench otel`: what OpenTelemetry costs per update, in CPU
 * time, in the module's own hot path: the sink running each update through
 * `sequentialize()` (100 000 updates over 1 000 chats, concurrency 500, an
 * empty handler; no HTTP and no grammY, so the module's share is not hidden
 * by theirs). Variants, interleaved round by round:
 *
 * - `none`: no provider (the default: the module imports
 *   `@opentelemetry/api`, and without an SDK it records nothing);
 * - `api no-op`: a provider that hands out the API's no-op meter and tracer,
 *   so every hook runs and nothing is recorded (the cost of the hooks);
 * - `sdk metrics`: the SDK's `MeterProvider` with a periodic reader (1 s)
 *   and an in-memory exporter, no spans;
 * - `sdk metrics + spans`: the same plus a `TracerProvider` with a batch span
 *   processor and an in-memory exporter (emptied after each round);
 * - `sdk metrics + 1 % of spans`: the same, its sampler keeping one trace in 100;
 * - `baseline` (with `--baseline=DIR`): the same workload on another checkout
 *   of the module in DIR, e.g. the commit before telemetry existed.
 *
 * ```sh
 * deno task --cwd bench otel
 * deno task --cwd bench otel --updates=50000 --rounds=3
 * git -C .. archive 1ea351a | tar -x -C /tmp/base && deno task --cwd bench otel --baseline=/tmp/base
 * ```
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import * as runner from "@grammyx/runner";
import type { TelemetryOptions } from "@grammyx/runner";
import { createNoopMeter, ProxyTracerProvider } from "@opentelemetry/api";
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import {
  BatchSpanProcessor,
  InMemorySpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { median } from "./_stats.ts";

const { values } = parseArgs({
  options: {
    updates: { type: "string", default: "100000" },
    chats: { type: "string", default: "1000" },
    concurrency: { type: "string", default: "500" },
    rounds: { type: "string", default: "5" },
    baseline: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "deno task --cwd bench otel [--updates=100000] [--chats=1000] [--concurrency=500] " +
      "[--rounds=5] [--baseline=DIR]",
  );
  Deno.exit(0);
}
const sizes = {
  updates: Number(values.updates),
  chats: Number(values.chats),
  concurrency: Number(values.concurrency),
  rounds: Number(values.rounds),
};
for (const [name, value] of Object.entries(sizes)) {
  if (!Number.isSafeInteger(value) || value < 1) {
    console.error(`Cannot run the otel bench as '--${name}' must be a positive integer`);
    Deno.exit(2);
  }
}

/** What a variant needs of the module. */
type Module = Pick<typeof runner, "createConcurrentSink" | "sequentialize">;

/** One way to run the workload. */
interface Variant {
  name: string;
  module: Module;
  telemetry: () => TelemetryOptions | undefined;
  /** Called after each round (empties exporters). */
  afterRound?: () => void;
  shutdown?: () => Promise<void>;
}

function sdkVariant(name: string, spans: boolean, sampled = 1): Variant {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 1_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({
    spanProcessors: [new BatchSpanProcessor({ exporter: spanExporter })],
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(sampled) }),
  });
  return {
    name,
    module: runner,
    telemetry: () => ({ meterProvider, tracerProvider, spans }),
    afterRound: () => {
      exporter.reset();
      spanExporter.reset();
    },
    shutdown: async () => {
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
    },
  };
}

const variants: Variant[] = [
  { name: "none", module: runner, telemetry: () => undefined },
  {
    name: "api no-op",
    module: runner,
    telemetry: () => ({
      // Not the API's own no-op objects, so the module takes them as live.
      meterProvider: { getMeter: () => Object.create(createNoopMeter()) },
      tracerProvider: new ProxyTracerProvider().getDelegate(),
    }),
  },
  sdkVariant("sdk metrics", false),
  sdkVariant("sdk metrics + spans", true),
  sdkVariant("sdk metrics + 1 % of spans", true, 0.01),
];
if (values.baseline !== undefined) {
  const root = new URL(`file://${Deno.realPathSync(values.baseline)}/`);
  const module = await import(new URL("mod.ts", root).href) as Module;
  variants.unshift({ name: `baseline (${values.baseline})`, module, telemetry: () => undefined });
}

type U = { update_id: number; chat: number };

/** Runs the workload once; returns the CPU time of this process in µs per update, and the wall time. */
async function round(variant: Variant): Promise<{ cpuUs: number; wallMs: number }> {
  const { createConcurrentSink, sequentialize } = variant.module;
  const ordered = sequentialize((ctx: { chat: number }) => ctx.chat);
  const telemetry = variant.telemetry();
  const sink = createConcurrentSink<U>(
    { consume: (update) => ordered({ update, chat: update.chat } as never, () => {}) },
    async () => {},
    {
      concurrency: sizes.concurrency,
      ...(telemetry === undefined ? {} : { telemetry } as never),
    },
  );
  const updates = Array.from({ length: sizes.updates }, (_, index) => ({
    update_id: index + 1,
    chat: 1 + (index * 7919) % sizes.chats,
  }));
  const started = process.cpuUsage();
  const wall = performance.now();
  let capacity = await sink.handle([]);
  let next = 0;
  while (next < updates.length) {
    const size = Math.max(1, Math.min(100, Math.floor(capacity)));
    capacity = await sink.handle(updates.slice(next, next + size));
    next += size;
  }
  await sink.idle?.();
  await sink.close?.();
  const used = process.cpuUsage(started);
  return { cpuUs: (used.user + used.system) / sizes.updates, wallMs: performance.now() - wall };
}

console.error(
  `otel bench: ${sizes.updates} updates, ${sizes.chats} chats, concurrency ${sizes.concurrency}, ` +
    `${sizes.rounds} rounds (+1 warm-up), deno ${Deno.version.deno}`,
);
const samples = new Map<string, number[]>(variants.map((variant) => [variant.name, []]));
for (let index = 0; index <= sizes.rounds; index++) {
  for (const variant of variants) {
    const { cpuUs, wallMs } = await round(variant);
    variant.afterRound?.();
    if (index > 0) samples.get(variant.name)!.push(cpuUs);
    console.error(
      `  ${index === 0 ? "warm-up" : `round ${index}`} ${variant.name}: ${
        cpuUs.toFixed(2)
      } µs/update, ${Math.round(wallMs)} ms`,
    );
  }
}
for (const variant of variants) await variant.shutdown?.();

const reference = median(samples.get("none")!);
const baseline = variants[0]!.name.startsWith("baseline")
  ? median(samples.get(variants[0]!.name)!)
  : NaN;
console.log(
  "\n| variant | CPU per update (median) | spread | × none |" +
    (Number.isFinite(baseline) ? " × baseline |" : ""),
);
console.log("| --- | ---: | ---: | ---: |" + (Number.isFinite(baseline) ? " ---: |" : ""));
for (const variant of variants) {
  const values = samples.get(variant.name)!;
  const middle = median(values);
  const spread = (Math.max(...values) - Math.min(...values)) / 2 / middle;
  const cells = [
    variant.name,
    `${middle.toFixed(2)} µs`,
    `±${Math.round(spread * 100)} %`,
    `${(middle / reference).toFixed(2)}×`,
    ...(Number.isFinite(baseline) ? [`${(middle / baseline).toFixed(2)}×`] : []),
  ];
  console.log(`| ${cells.join(" | ")} |`);
}
console.log(
  `\nLoad average (1/5/15 min): ${Deno.loadavg().map((value) => value.toFixed(1)).join(" ")}`,
);
