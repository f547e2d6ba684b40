/**
 * The shapes behind the scenario table (`scenarios.ts`): a scenario's plan
 * per mode, its columns and targets, and the analyses that derive extra
 * metrics from a child's raw report.
 *
 * ```ts
 * import type { Scenario } from "./_scenario.ts";
 *
 * const columns: Scenario["columns"] = [{ header: "rate", key: "rate", unit: "rate" }];
 * ```
 *
 * @module
 */

import type { FaultOptions } from "@grammyx/runner/testing";
import type { ChildReport, HandlerSpec } from "./_protocol.ts";
import { percentile, type Unit } from "./_stats.ts";
import type { SubjectName } from "./_subjects.ts";
import type { Metrics, TrialResult } from "./_trial.ts";

/** What `analyze` gets: the child's report and what the parent knows. */
export interface TrialData {
  report: ChildReport;
  /** Chat id per update index (update id − 1). */
  chats: Int32Array;
  /** When the server queued an update (epoch ms). */
  enqueuedAt: (updateId: number) => number;
}

/** One trial's sizes and behaviour, for one mode (full or quick). */
export interface Plan {
  scenario: string;
  seed: number;
  count: number;
  /** Chat ids run from 1 to `chats`. */
  chats: number;
  /** Chat of the update at `index`; by default a seeded random chat. */
  chatOf?: (index: number, random: () => number) => number;
  concurrency: number;
  sequentialize: boolean;
  handler: HandlerSpec;
  faults?: FaultOptions;
  stopAfter?: number;
  /** Kills with SIGKILL, each followed by a restart (the crash scenario). */
  kills?: number;
  /** Worker threads of `distribute()` (the cpu scenario). */
  workers?: number;
  /** Time limit of a run; what happens when it runs out depends on the trial. */
  budgetMs: number;
  /** A run that handled nothing new for this long is given up. */
  stallMs: number;
  /** Extra metrics from the raw data. */
  analyze?: (data: TrialData) => Metrics;
}

/** A table column: a metric, or a metric relative to another subject's. */
export interface Column {
  header: string;
  key: string;
  unit: Unit;
  relativeTo?: SubjectName;
  /** Shows the cell as text made from all of the row's metrics, instead of `key` in `unit`. */
  cell?: (metrics: Metrics) => string;
}

/** A bound on a subject's metric: a number, or a factor of another subject's. */
export type Threshold = number | { subject: SubjectName; factor: number };

/** A target from the issues, checked after the scenario ran. */
export interface Target {
  label: string;
  subject: SubjectName;
  key: string;
  atLeast?: Threshold;
  atMost?: Threshold;
}

/** Runs one subject through a plan once (`runTrial` from `_trial.ts` by default). */
export type TrialRunner = (plan: Plan, subject: SubjectName, run: number) => Promise<TrialResult>;

/** A scenario of the bench. */
export interface Scenario {
  name: string;
  summary: string;
  /**
   * The subjects it runs without `--subjects`, in this order. With
   * `--subjects`, those named that are listed here or are variants of a
   * subject listed here.
   */
  subjects: SubjectName[];
  /** Whether only the listed subjects can run, not their variants (a trial of its own). */
  onlyListed?: boolean;
  /** How a trial runs, if not as one `bench/subject.ts` process. */
  trial?: TrialRunner;
  /** A throughput scenario: repeated `--runs` times, medians shown. */
  repeat: boolean;
  plan: (quick: boolean) => Plan;
  columns: Column[];
  targets: Target[];
}

/**
 * Distinct updates handled per second, first handler start to last end.
 *
 * @param report A child's report
 * @returns Updates per second
 */
export function rateOf(report: ChildReport): number {
  const wallMs = report.lastEndAt - report.firstStartAt;
  return wallMs > 0 ? report.unique / (wallMs / 1000) : NaN;
}

/**
 * The percentiles of the cold chats' latency that `hotAndCold` records (the
 * chart draws them as a distribution), by metric key.
 */
export const COLD_PERCENTILES: ReadonlyArray<{ key: string; fraction: number; label: string }> = [
  { key: "coldP1Ms", fraction: 0.01, label: "p1" },
  { key: "coldP10Ms", fraction: 0.1, label: "p10" },
  { key: "coldP25Ms", fraction: 0.25, label: "p25" },
  { key: "coldP50Ms", fraction: 0.5, label: "p50" },
  { key: "coldP75Ms", fraction: 0.75, label: "p75" },
  { key: "coldP90Ms", fraction: 0.9, label: "p90" },
  { key: "coldP95Ms", fraction: 0.95, label: "p95" },
  { key: "coldP99Ms", fraction: 0.99, label: "p99" },
  { key: "coldP999Ms", fraction: 0.999, label: "p99.9" },
  { key: "coldMaxMs", fraction: 1, label: "max" },
];

/**
 * Latency of the cold chats, and how long the hot chat took against its
 * serial minimum (its update count × its handler time).
 *
 * @param data The trial's raw data
 * @param hotChat The hot chat's id
 * @param hotMs The hot chat's handler time
 * @returns the cold chats' percentiles (`COLD_PERCENTILES`: coldP1Ms … coldMaxMs),
 *   hotCount, hotDoneMs, hotSerialMs, hotVsSerial
 */
export function hotAndCold(
  { report, chats, enqueuedAt }: TrialData,
  hotChat: number,
  hotMs: number,
): Metrics {
  const cold: number[] = [];
  let hotCount = 0;
  let hotHandled = 0;
  let hotFirstEnqueued = Infinity;
  let hotLastEnd = -Infinity;
  for (const [index, end] of report.ends.entries()) {
    const isHot = chats[index] === hotChat;
    if (isHot) {
      hotCount++;
      hotFirstEnqueued = Math.min(hotFirstEnqueued, enqueuedAt(index + 1));
    }
    if (end < 0) continue;
    if (isHot) {
      hotHandled++;
      hotLastEnd = Math.max(hotLastEnd, report.base + end);
    } else cold.push(report.base + end - enqueuedAt(index + 1));
  }
  cold.sort((a, b) => a - b);
  // Unfinished (out of budget): the hot chat has no completion time.
  const hotDoneMs = hotHandled === hotCount ? hotLastEnd - hotFirstEnqueued : NaN;
  const hotSerialMs = hotCount * hotMs;
  return {
    ...Object.fromEntries(
      COLD_PERCENTILES.map(({ key, fraction }) => [key, percentile(cold, fraction)]),
    ),
    hotCount,
    hotDoneMs,
    hotSerialMs,
    hotVsSerial: hotDoneMs / hotSerialMs,
  };
}
