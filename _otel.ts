/**
 * The one place the library names the OpenTelemetry API, with a full `npm:`
 * specifier. Kept apart from `_deps.ts` so that the sink, which records
 * telemetry, does not load grammY. The API package is a no-op until the
 * application (or Deno, with `OTEL_DENO=true`) registers a provider.
 *
 * @module
 */

export {
  context,
  createNoopMeter,
  diag,
  DiagLogLevel,
  metrics,
  ProxyTracer,
  SpanKind,
  SpanStatusCode,
  trace,
} from "npm:@opentelemetry/api@^1.9.0";
export type {
  Attributes,
  BatchObservableCallback,
  Counter,
  Histogram,
  Meter,
  MeterProvider,
  ObservableGauge,
  Span,
  Tracer,
  TracerProvider,
} from "npm:@opentelemetry/api@^1.9.0";
