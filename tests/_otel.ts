// The OpenTelemetry SDK for the tests: real providers with in-memory
// exporters, and helpers to read what they recorded. The SDK is a dev
// dependency: only tests/ (and the bench) import it, never the library.

import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "npm:@opentelemetry/sdk-metrics@^3.1.1";
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from "npm:@opentelemetry/sdk-trace@^3.1.1";

export type { ReadableSpan };

/** One metric as the tests read it: its unit and its points, by attributes. */
export interface RecordedMetric {
  unit: string;
  points: DataPoint<unknown>[];
}

/**
 * A meter and a tracer provider that keep everything in memory. Dispose of
 * it (`await using`) to shut both down: the metric reader holds a timer.
 */
export class TelemetryKit {
  readonly #metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  readonly #reader = new PeriodicExportingMetricReader({
    exporter: this.#metrics,
    exportIntervalMillis: 2 ** 31 - 1,
  });
  readonly #spans = new InMemorySpanExporter();
  readonly meterProvider = new MeterProvider({ readers: [this.#reader] });
  readonly tracerProvider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter: this.#spans })],
  });

  /** The options to pass as `telemetry`. */
  get options(): { meterProvider: MeterProvider; tracerProvider: TracerProvider } {
    return { meterProvider: this.meterProvider, tracerProvider: this.tracerProvider };
  }

  /** Collects now: every metric by name. */
  async metrics(): Promise<Map<string, RecordedMetric>> {
    await this.#reader.forceFlush();
    const exported = this.#metrics.getMetrics().at(-1);
    this.#metrics.reset();
    const byName = new Map<string, RecordedMetric>();
    for (const scope of exported?.scopeMetrics ?? []) {
      for (const metric of scope.metrics) {
        byName.set(metric.descriptor.name, {
          unit: metric.descriptor.unit,
          points: metric.dataPoints as DataPoint<unknown>[],
        });
      }
    }
    return byName;
  }

  /** Every span that ended so far. */
  spans(): ReadableSpan[] {
    return this.#spans.getFinishedSpans();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.meterProvider.shutdown();
    await this.tracerProvider.shutdown();
  }
}

/** The sum of a metric's points (a counter's total over every attribute set); 0 if absent. */
export function total(metrics: Map<string, RecordedMetric>, name: string): number {
  let sum = 0;
  for (const point of metrics.get(name)?.points ?? []) {
    const value = point.value;
    sum += typeof value === "number" ? value : (value as { count: number }).count;
  }
  return sum;
}

/** A metric's value per value of one attribute. */
export function byAttribute(
  metrics: Map<string, RecordedMetric>,
  name: string,
  attribute: string,
): Record<string, number> {
  const result: Record<string, number> = {};
  for (const point of metrics.get(name)?.points ?? []) {
    const key = String(point.attributes[attribute]);
    const value = point.value;
    result[key] = (result[key] ?? 0) +
      (typeof value === "number" ? value : (value as { count: number }).count);
  }
  return result;
}
