// OpenTelemetry for the runner, in one place: the metrics and spans of the
// sink (each update taken, its waits, its outcome; the gauges behind
// `stats()`) and of the fetcher's calls (getUpdates, its failures by kind,
// stalls). Only `@opentelemetry/api` is used. Without a provider (none
// installed, none passed) `telemetryOf` returns `undefined`: the sink and
// the calls then hold no telemetry and skip each hook with one check. Every
// sink records the same way, so a runner built on the sink (run(), the queue
// workers) gets it all without code of its own. Not exported by mod.ts.

import {
  type Attributes,
  type BatchObservableCallback,
  context,
  type Counter,
  createNoopMeter,
  diag,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics,
  type ObservableGauge,
  ProxyTracer,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider,
} from "./_otel.ts";
import type { TaskState } from "./_backlog.ts";
import { clock } from "./_clock.ts";
import { describe } from "./_redact.ts";
import { knownOptions, oneOf, optionalObject, show } from "./_validate.ts";
import type { Outcome, SinkStats } from "./_sink_contract.ts";

/**
 * Where the runner's metrics and spans go. By default, to the providers the
 * application registered with `@opentelemetry/api` (Deno registers its own
 * with `OTEL_DENO=true`); with none registered, nothing is recorded. The
 * providers are looked up once, when the runner (or the sink) is created.
 */
export interface TelemetryOptions {
  /**
   * The meter provider to record metrics with: an OpenTelemetry
   * `MeterProvider` (the SDK's, Deno's).
   *
   * @default {metrics.getMeterProvider()} (the global one)
   */
  meterProvider?: TelemetryMeterProvider;
  /**
   * The tracer provider to record spans with: an OpenTelemetry
   * `TracerProvider` (the SDK's, Deno's).
   *
   * @default {trace.getTracerProvider()} (the global one)
   */
  tracerProvider?: TelemetryTracerProvider;
  /**
   * Whether to record spans: one per update and one per Bot API call of the
   * fetcher. Metrics are recorded either way.
   *
   * @default {true}
   */
  spans?: boolean;
  /**
   * How an update's span shows the key `sequentialize()` gave it:
   * `"hash"` (a 53-bit hash of the key, in hex: groups a chat's updates
   * without writing its id), `"raw"` (the key itself, e.g. the chat id) or
   * `"none"`.
   *
   * @default {"hash"}
   */
  keys?: "hash" | "raw" | "none";
  /**
   * Attributes added to every metric point and span, e.g.
   * `{ "grammy.bot": "support" }` to tell two runners of one process apart.
   *
   * @default {{}}
   */
  attributes?: TelemetryAttributes;
}

/**
 * An OpenTelemetry `MeterProvider`, as far as the runner uses one: any
 * `MeterProvider` of `@opentelemetry/api` fits (the SDK's, Deno's).
 */
export interface TelemetryMeterProvider {
  /** Returns the meter of an instrumentation scope. */
  getMeter(name: string): object;
}

/**
 * An OpenTelemetry `TracerProvider`, as far as the runner uses one: any
 * `TracerProvider` of `@opentelemetry/api` fits (the SDK's, Deno's).
 */
export interface TelemetryTracerProvider {
  /** Returns the tracer of an instrumentation scope. */
  getTracer(name: string): object;
}

/** Attributes of metric points and spans, as OpenTelemetry takes them. */
export type TelemetryAttributes = Record<
  string,
  string | number | boolean | string[] | number[] | boolean[]
>;

/** The instrumentation scope that backends show as the source of the figures. */
const SCOPE = "@grammyx/runner";

/**
 * The name of every metric the runner records, by what it counts. Units
 * follow UCUM: counters and gauges of updates in `{update}`, of calls in
 * `{call}`, durations and the lag in seconds (`s`). Prometheus shows the
 * dots as underscores and counters with a `_total` suffix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { METRICS } from "@grammyx/runner/telemetry";
 *
 * assert.equal(METRICS.handled, "grammy.runner.updates.handled");
 * assert.equal(METRICS.duration, "grammy.runner.update.duration");
 * ```
 */
export const METRICS = {
  fetched: "grammy.runner.updates.fetched",
  handled: "grammy.runner.updates.handled",
  failed: "grammy.runner.updates.failed",
  timedOut: "grammy.runner.updates.timed_out",
  duration: "grammy.runner.update.duration",
  keyWait: "grammy.runner.update.wait_for_key.duration",
  slotWait: "grammy.runner.update.wait_for_slot.duration",
  running: "grammy.runner.updates.running",
  waitingForKey: "grammy.runner.updates.waiting_for_key",
  waitingForSlot: "grammy.runner.updates.waiting_for_slot",
  pending: "grammy.runner.updates.pending",
  lag: "grammy.runner.lag",
  calls: "grammy.runner.getupdates.calls",
  failures: "grammy.runner.getupdates.failures",
  stalls: "grammy.runner.stalls",
} as const;

/** Bucket bounds for the duration histograms, in seconds (1 ms to 5 min). */
const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The words of the outcomes in attributes (OpenTelemetry values are snake_case). */
const OUTCOME: Record<Outcome, string> = {
  handled: "handled",
  failed: "failed",
  timedOut: "timed_out",
};

/** Checked options with the providers looked up: what records, and how. */
export interface Telemetry {
  meter: Meter;
  /** `undefined`: no spans. */
  tracer: Tracer | undefined;
  keys: "hash" | "raw" | "none";
  attributes: Attributes;
}

/**
 * Checks the `telemetry` option and looks the providers up.
 *
 * @returns `undefined` when there is nothing to record with (no provider)
 * @throws {TypeError} naming the option and the value if it is invalid
 */
export function telemetryOf(
  subject: string,
  options: TelemetryOptions | undefined,
): Telemetry | undefined {
  optionalObject(subject, "telemetry", options);
  if (options === undefined) options = {};
  knownOptions(
    subject,
    options,
    ["meterProvider", "tracerProvider", "spans", "keys", "attributes"],
    "telemetry",
  );
  const { meterProvider, tracerProvider, spans = true, keys = "hash", attributes = {} } = options;
  provider(subject, "meterProvider", meterProvider, "getMeter");
  provider(subject, "tracerProvider", tracerProvider, "getTracer");
  oneOf(subject, "telemetry.spans", spans, [true, false]);
  oneOf(subject, "telemetry.keys", keys, ["hash", "raw", "none"]);
  optionalObject(subject, "telemetry.attributes", attributes);
  let meter = createNoopMeter();
  let tracer: Tracer | undefined;
  try {
    meter = ((meterProvider as MeterProvider | undefined) ?? metrics.getMeterProvider())
      .getMeter(SCOPE);
    if (spans) {
      tracer = ((tracerProvider as TracerProvider | undefined) ?? trace.getTracerProvider())
        .getTracer(SCOPE);
    }
  } catch (error) {
    failedToRecord("anything: the provider refused a meter or a tracer", error);
  }
  // No provider registered: the API hands out its no-op meter and a proxy tracer.
  const meterLive = meter !== createNoopMeter();
  const tracerLive = tracer !== undefined && !(tracer instanceof ProxyTracer);
  if (!meterLive && !tracerLive) return undefined;
  return { meter, tracer: tracerLive ? tracer : undefined, keys, attributes: { ...attributes } };
}

function provider(subject: string, name: string, value: unknown, method: string): void {
  if (value === undefined) return;
  if (
    typeof value !== "object" || value === null ||
    typeof (value as Record<string, unknown>)[method] !== "function"
  ) {
    throw new TypeError(
      `${subject} as 'telemetry.${name}' must have a ${method} function: current value is ${
        show(value)
      }`,
    );
  }
}

/** What the sink's telemetry needs of an update in the sink. */
interface Tracked {
  state: TaskState;
  readonly tracked: UpdateTrack | undefined;
}

/** The sink's metrics and update spans. */
export class SinkTelemetry {
  readonly #settings: Telemetry;
  readonly #stats: () => SinkStats;
  readonly #fetched: Counter;
  readonly #outcomes: Record<Outcome, Counter>;
  readonly #duration: Histogram;
  readonly #keyWait: Histogram;
  readonly #slotWait: Histogram;
  readonly #gauges: Record<
    "running" | "waitingForKey" | "waitingForSlot" | "pending",
    ObservableGauge
  >;
  readonly #lag: ObservableGauge;
  /** The attributes of each outcome's points. */
  readonly #outcomeAttributes: Record<Outcome, Attributes>;
  #observing = false;

  /** The sink's telemetry, or `undefined` (and a diagnostic) if the provider refuses the instruments. */
  static create(settings: Telemetry, stats: () => SinkStats): SinkTelemetry | undefined {
    try {
      return new SinkTelemetry(settings, stats);
    } catch (error) {
      failedToRecord("anything: the meter refused the sink's instruments", error);
      return undefined;
    }
  }

  private constructor(settings: Telemetry, stats: () => SinkStats) {
    this.#settings = settings;
    this.#stats = stats;
    const { meter, attributes } = settings;
    const counter = (name: string, description: string) =>
      meter.createCounter(name, { description, unit: "{update}" });
    const histogram = (name: string, description: string) =>
      meter.createHistogram(name, {
        description,
        unit: "s",
        advice: { explicitBucketBoundaries: BUCKETS },
      });
    const gauge = (name: string, description: string) =>
      meter.createObservableGauge(name, {
        description,
        unit: "{update}",
      });
    this.#fetched = counter(METRICS.fetched, "Updates taken by the sink");
    this.#outcomes = {
      handled: counter(METRICS.handled, "Updates whose middleware completed"),
      failed: counter(METRICS.failed, "Updates whose middleware threw"),
      timedOut: counter(METRICS.timedOut, "Updates that ran out of time"),
    };
    this.#duration = histogram(
      METRICS.duration,
      "Time an update held a concurrency slot, until its outcome",
    );
    this.#keyWait = histogram(METRICS.keyWait, "Time an update waited for its key");
    this.#slotWait = histogram(METRICS.slotWait, "Time an update waited for a concurrency slot");
    this.#gauges = {
      running: gauge(METRICS.running, "Updates holding a concurrency slot"),
      waitingForKey: gauge(METRICS.waitingForKey, "Updates waiting for their key, holding no slot"),
      waitingForSlot: gauge(METRICS.waitingForSlot, "Updates waiting for a concurrency slot"),
      pending: gauge(METRICS.pending, "Updates taken and not finished"),
    };
    this.#lag = meter.createObservableGauge(METRICS.lag, {
      description: "Time since the oldest unfinished update was taken",
      unit: "s",
    });
    this.#outcomeAttributes = {
      handled: { ...attributes, "grammy.runner.outcome": OUTCOME.handled },
      failed: { ...attributes, "grammy.runner.outcome": OUTCOME.failed },
      timedOut: { ...attributes, "grammy.runner.outcome": OUTCOME.timedOut },
    };
  }

  /** Counts a batch taken; the gauges report from the first one until `close()`. */
  taken(count: number): void {
    try {
      this.#fetched.add(count, this.#settings.attributes);
      if (!this.#observing) {
        this.#observing = true;
        this.#settings.meter.addBatchObservableCallback(this.#observe, this.#observables());
      }
    } catch (error) {
      failedToRecord("the updates taken", error);
    }
  }

  /** Starts following an update just taken (and its span). */
  track(update: unknown): UpdateTrack {
    return new UpdateTrack(this.#settings, update);
  }

  /** Books a change of state: the waits, the time holding a slot, and the outcome. */
  moved(task: Tracked, to: TaskState): void {
    try {
      this.#moved(task, to);
    } catch (error) {
      failedToRecord("an update's change of state", error);
    }
  }

  #moved(task: Tracked, to: TaskState): void {
    const track = task.tracked;
    if (track === undefined) return;
    const now = performance.now();
    const seconds = (now - track.since) / 1000;
    track.since = now;
    const from = task.state;
    const { attributes } = this.#settings;
    if (from === "running") track.running += seconds;
    else if (from === "waitingForKey") this.#keyWait.record(seconds, attributes);
    else if (from === "waitingForSlot" && to === "running") {
      this.#slotWait.record(seconds, attributes);
    }
    if (to === "handled" || to === "failed" || to === "timedOut") {
      const outcome = this.#outcomeAttributes[to];
      this.#outcomes[to].add(1, this.#settings.attributes);
      this.#duration.record(track.running, outcome);
      track.end(to);
    }
  }

  /** Stops the gauges (the runner stopped); the next batch taken starts them again. */
  close(): void {
    if (!this.#observing) return;
    this.#observing = false;
    try {
      this.#settings.meter.removeBatchObservableCallback(this.#observe, this.#observables());
    } catch (error) {
      failedToRecord("the end of the gauges", error);
    }
  }

  #observables(): ObservableGauge[] {
    return [...Object.values(this.#gauges), this.#lag];
  }

  readonly #observe: BatchObservableCallback = (result) => {
    const stats = this.#stats();
    const { attributes } = this.#settings;
    for (const name of ["running", "waitingForKey", "waitingForSlot", "pending"] as const) {
      result.observe(this.#gauges[name], stats[name], attributes);
    }
    const oldest = stats.oldestPendingSince;
    result.observe(
      this.#lag,
      oldest === undefined ? 0 : (clock().now() - oldest) / 1000,
      attributes,
    );
  };
}

/** One update in the sink: its span, and the times behind the histograms. */
export class UpdateTrack {
  /** `performance.now()` when the update entered its current state. */
  since = performance.now();
  /** Seconds it held a slot so far. */
  running = 0;
  readonly #span: Span | undefined;
  readonly #keys: Telemetry["keys"];
  #error: unknown;

  constructor(settings: Telemetry, update: unknown) {
    this.#keys = settings.keys;
    const tracer = settings.tracer;
    if (tracer === undefined) return;
    const type = typeOf(update);
    const attributes: Attributes = { ...settings.attributes, "grammy.update.type": type };
    const id = (update as { update_id?: unknown } | undefined)?.update_id;
    if (typeof id === "number") attributes["grammy.update.id"] = id;
    try {
      this.#span = tracer.startSpan(`handle ${type}`, { kind: SpanKind.CONSUMER, attributes });
    } catch (error) {
      failedToRecord("an update's span", error);
    }
  }

  /** Runs the middleware with the update's span as the active one, so its own spans nest. */
  within<T>(run: () => T): T {
    if (this.#span === undefined) return run();
    return context.with(trace.setSpan(context.active(), this.#span), run);
  }

  /** `sequentialize()` told the update's keys. */
  keyed(keys: readonly string[]): void {
    if (this.#span === undefined || this.#keys === "none" || keys.length === 0) return;
    if (!this.#span.isRecording()) return; // sampled out: no attribute is kept
    const shown = this.#keys === "raw" ? keys : keys.map(hashOf);
    const name = this.#keys === "raw" ? "grammy.runner.key" : "grammy.runner.key.hash";
    try {
      this.#span.setAttribute(name, shown.length === 1 ? shown[0]! : [...shown]);
    } catch (error) {
      failedToRecord("an update's keys", error);
    }
  }

  /** The middleware threw `error` (the span says so, without the token). */
  failed(error: unknown): void {
    this.#error = error;
  }

  end(outcome: Outcome): void {
    const span = this.#span;
    if (span === undefined) return;
    if (!span.isRecording()) return span.end();
    span.setAttribute("grammy.runner.outcome", OUTCOME[outcome]);
    if (outcome === "failed") {
      const error = this.#error;
      span.setAttribute("error.type", error instanceof Error ? error.name : typeof error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: describe(error) });
    } else if (outcome === "timedOut") {
      span.setAttribute("error.type", "timeout");
      span.setStatus({ code: SpanStatusCode.ERROR, message: "The update ran out of time" });
    }
    span.end();
  }
}

/**
 * Telemetry never breaks the bot: an error of the provider goes to
 * OpenTelemetry's own diagnostic logger (`diag.setLogger` shows it).
 */
function failedToRecord(what: string, error: unknown): void {
  diag.error(`@grammyx/runner could not record ${what}: ${describe(error)}`);
}

/** The update's type: its one field besides `update_id` ("message", "callback_query", ...). */
function typeOf(update: unknown): string {
  if (typeof update === "object" && update !== null) {
    for (const key in update) if (key !== "update_id") return key;
  }
  return "unknown";
}

/**
 * The hash an update span shows for a `sequentialize()` key (with the
 * default `telemetry.keys: "hash"`): 14 hex digits of a 53-bit hash
 * (cyrb53) of the key's text, the same in every process, so one chat's
 * updates share it. Compute it to find a chat's spans. It keeps ids out of
 * the telemetry backend, but is no anonymisation: a chat id can be guessed
 * and hashed.
 *
 * @param key A key as `sequentialize()` holds it: its text, so `5` is `"5"`
 * @returns 14 hexadecimal digits
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hashOf } from "@grammyx/runner/telemetry";
 *
 * const chatId = 123456789;
 * assert.match(hashOf(String(chatId)), /^[0-9a-f]{14}$/);
 * assert.equal(hashOf("123456789"), hashOf(String(chatId)));
 * ```
 */
export function hashOf(key: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < key.length; i++) {
    const char = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ char, 2654435761);
    h2 = Math.imul(h2 ^ char, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, "0");
}

/** What a failed Bot API call counts as: "network", "5xx", "429", "409", "4xx" or "malformed". */
export function failureKind(error: unknown): string {
  const code = (error as { error_code?: unknown } | undefined)?.error_code;
  if (typeof code === "number") {
    if (code === 429 || code === 409) return String(code);
    return code >= 500 ? "5xx" : "4xx";
  }
  if (error instanceof Error && error.name === "MalformedAnswer") return "malformed";
  // No answer: a refused or cut connection, a timeout, a stall.
  return "network";
}

/** The fetcher's metrics and call spans. */
export class CallTelemetry {
  readonly #settings: Telemetry;
  readonly #calls: Counter;
  readonly #failures: Counter;
  readonly #stalls: Counter;
  /** Failure attributes by kind, made once each. */
  readonly #kinds = new Map<string, Attributes>();
  /** Describes an error in one line without the token. */
  readonly #describe: (error: unknown) => string;

  /** The calls' telemetry, or `undefined` (and a diagnostic) if the provider refuses the instruments. */
  static create(
    settings: Telemetry,
    describe: (error: unknown) => string,
  ): CallTelemetry | undefined {
    try {
      return new CallTelemetry(settings, describe);
    } catch (error) {
      failedToRecord("anything: the meter refused the calls' instruments", error);
      return undefined;
    }
  }

  private constructor(settings: Telemetry, describe: (error: unknown) => string) {
    this.#settings = settings;
    this.#describe = describe;
    const { meter } = settings;
    const counter = (name: string, description: string) =>
      meter.createCounter(name, { description, unit: "{call}" });
    this.#calls = counter(METRICS.calls, "getUpdates calls, retries included");
    this.#failures = counter(
      METRICS.failures,
      "getUpdates calls that failed, by kind (error.type)",
    );
    this.#stalls = counter(
      METRICS.stalls,
      "Bot API calls aborted by the watchdog after no answer came in time",
    );
  }

  polled(): void {
    try {
      this.#calls.add(1, this.#settings.attributes);
    } catch (error) {
      failedToRecord("a getUpdates call", error);
    }
  }

  pollFailed(failure: unknown): void {
    const kind = failureKind(failure);
    let attributes = this.#kinds.get(kind);
    if (attributes === undefined) {
      attributes = { ...this.#settings.attributes, "error.type": kind };
      this.#kinds.set(kind, attributes);
    }
    try {
      this.#failures.add(1, attributes);
    } catch (error) {
      failedToRecord("a failed getUpdates call", error);
    }
  }

  stalled(call: string): void {
    try {
      this.#stalls.add(1, { ...this.#settings.attributes, "grammy.runner.call": call });
    } catch (error) {
      failedToRecord("a stall", error);
    }
  }

  /**
   * Runs one Bot API call inside a span named after its method. An answer
   * that is a list sets how many updates it held; a failure sets the span's
   * error, unless `signal` aborted (the runner stopped it).
   */
  async call<T>(
    method: string,
    call: string,
    attributes: Attributes | undefined,
    signal: AbortSignal | undefined,
    run: () => Promise<T>,
  ): Promise<T> {
    const tracer = this.#settings.tracer;
    if (tracer === undefined) return await run();
    let span: Span;
    try {
      span = tracer.startSpan(method, {
        kind: SpanKind.CLIENT,
        attributes: { ...this.#settings.attributes, ...attributes, "grammy.runner.call": call },
      });
    } catch (error) {
      failedToRecord(`a ${method} span`, error);
      return await run();
    }
    let result: T;
    try {
      result = await context.with(trace.setSpan(context.active(), span), run);
    } catch (error) {
      this.#end(span, () => {
        if (signal?.aborted) span.setAttribute("grammy.runner.aborted", true);
        else {
          span.setAttribute("error.type", failureKind(error));
          span.setStatus({ code: SpanStatusCode.ERROR, message: this.#describe(error) });
        }
      });
      throw error;
    }
    this.#end(span, () => {
      if (Array.isArray(result)) span.setAttribute("grammy.getupdates.updates", result.length);
    });
    return result;
  }

  /** Sets what `describe` sets on a call's span and ends it, never throwing. */
  #end(span: Span, describe: () => void): void {
    try {
      describe();
      span.end();
    } catch (error) {
      failedToRecord("the end of a call's span", error);
    }
  }
}
