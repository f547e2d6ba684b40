/**
 * OpenTelemetry for the runner: the `telemetry` option's type, the names of
 * the metrics it records, and the hash its spans show instead of a raw key.
 * The runner records through `@opentelemetry/api` only; nothing is recorded
 * until the application registers a provider (Deno does with
 * `OTEL_DENO=true`) or passes one in `run(bot, { telemetry })`.
 *
 * ```ts
 * import { METRICS } from "@grammyx/runner/telemetry";
 *
 * console.log(METRICS.handled); // "grammy.runner.updates.handled"
 * ```
 *
 * @module
 */

export { hashOf, METRICS } from "./_telemetry.ts";
export type {
  TelemetryAttributes,
  TelemetryMeterProvider,
  TelemetryOptions,
  TelemetryTracerProvider,
} from "./_telemetry.ts";
