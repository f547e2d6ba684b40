/**
 * Subject `grammyx`: this module's `run()` and `sequentialize()`, with the
 * options the scenarios name and a 1 s long poll.
 *
 * ```ts
 * import { grammyx } from "./grammyx.ts";
 *
 * const handled = grammyx({ confirm: "handled" }); // a confirm-mode row
 * ```
 *
 * @module
 */

import { run, type RunnerOptions, sequentialize, type TelemetryOptions } from "@grammyx/runner";
import { kvJournal } from "@grammyx/runner/journal";
import { removeKvFiles } from "../_kv.ts";
import type { Driver } from "./_driver.ts";

/**
 * The `grammyx-journal` row: a Deno KV journal in a local file (as a bot on
 * one machine would use). Without `path`, a fresh temporary file, removed
 * when the process ends; with `path`, that file, left in place (the crash
 * scenario keeps it across kills).
 *
 * @param path The KV file, if it must outlive the process
 * @returns The driver
 */
export async function grammyxJournal(path?: string): Promise<Driver> {
  const file = path ?? await Deno.makeTempFile({ prefix: "grammyx-bench-", suffix: ".kv" });
  const kv = await Deno.openKv(file);
  globalThis.addEventListener("unload", () => {
    kv.close();
    if (path === undefined) removeKvFiles(file);
  });
  return grammyx({ journal: kvJournal(kv) });
}

/**
 * The `grammyx-otel` rows: OpenTelemetry's SDK installed, recording every
 * metric (and, with `spans`, every span) of the module into in-memory
 * exporters (a periodic metric reader every second, a batch span
 * processor), emptied every second.
 *
 * @param spans Whether to record spans too
 * @returns The driver
 */
export async function grammyxOtel(spans: boolean): Promise<Driver> {
  const metrics = await import("@opentelemetry/sdk-metrics");
  const traces = await import("@opentelemetry/sdk-trace");
  const metricExporter = new metrics.InMemoryMetricExporter(
    metrics.AggregationTemporality.CUMULATIVE,
  );
  const meterProvider = new metrics.MeterProvider({
    readers: [
      new metrics.PeriodicExportingMetricReader({
        exporter: metricExporter,
        exportIntervalMillis: 1_000,
      }),
    ],
  });
  const spanExporter = new traces.InMemorySpanExporter();
  const tracerProvider = new traces.TracerProvider({
    spanProcessors: [new traces.BatchSpanProcessor({ exporter: spanExporter })],
  });
  const empty = setInterval(() => {
    metricExporter.reset();
    spanExporter.reset();
  }, 1_000);
  Deno.unrefTimer(empty);
  return grammyx({}, { meterProvider, tracerProvider, spans });
}

/**
 * Builds the driver, with extra runner options for variant rows.
 *
 * @param runner Runner options merged over `{ fetch: { timeout: 1 } }`
 * @param telemetry Where metrics and spans go (by default: nowhere, no provider)
 * @returns The driver
 */
export function grammyx(runner: RunnerOptions = {}, telemetry?: TelemetryOptions): Driver {
  return {
    sequentialize: (key) => sequentialize(key),
    start(bot, { concurrency, maxPending }) {
      const handle = run(bot, {
        sink: { concurrency, ...(maxPending === undefined ? {} : { maxPending }) },
        runner: { fetch: { timeout: 1 }, ...runner },
        ...(telemetry === undefined ? {} : { telemetry }),
      });
      return {
        stop: async () => void await handle.stop(),
        ended: handle.task() ?? Promise.resolve(),
        size: () => handle.size(),
      };
    },
  };
}
