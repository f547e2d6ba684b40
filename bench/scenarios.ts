/**
 * The scenarios: what each one pushes, what its handler does, which subjects
 * it makes sense for, which figures its table shows and which targets it
 * checks. Every (scenario, subject) pair runs in its own process against a
 * fresh fake Bot API with the scenario's seed, and all updates are pushed at
 * once, before the bot starts. Most trials are one `subject.ts` process; cpu
 * (`_cpu.ts`, whose bot is `cpu.ts`) and crash (`_crash.ts`) bring trials of
 * their own.
 *
 * To add a row: a new subject goes into `_subjects.ts` and into the
 * `subjects` of the scenarios it fits. To add a scenario, append an entry
 * below; `plan(quick)` gives its sizes, `analyze` derives extra metrics, and
 * `trial` runs it when one `subject.ts` process per trial does not fit.
 *
 * ```ts
 * import { SCENARIOS } from "./scenarios.ts";
 *
 * const noop = SCENARIOS.find((scenario) => scenario.name === "noop")!;
 * noop.plan(true).count; // 10 000 in --quick mode
 * ```
 *
 * @module
 */

import type { Column, Scenario } from "./_scenario.ts";
import { hotAndCold, rateOf } from "./_scenario.ts";
import type { SubjectName } from "./_subjects.ts";
import type { Metrics } from "./_trial.ts";

export type { Column, Plan, Scenario, Target, Threshold, TrialData } from "./_scenario.ts";

const SEED = 20_240_601;
const RUNNERS: SubjectName[] = ["grammyx", "rival", "botstart"];
/** The throughput rows: every runner, grammyx's crash-safe modes, and the limit. */
const ALL: SubjectName[] = [
  "grammyx",
  "grammyx-handled",
  "grammyx-journal",
  "rival",
  "botstart",
  "limit",
];
/** Kills in the crash scenario. */
const KILLS = 4;

/** Full size, or a tenth of it in quick mode. */
function scale(quick: boolean, full: number): number {
  return quick ? Math.round(full / 10) : full;
}

/** CPU time of the bot process per update: less sensitive to a busy machine than rates. */
const cpuColumns: Column[] = [
  { header: "CPU/upd", key: "cpuUsPerUpdate", unit: "us" },
  { header: "×rival", key: "cpuUsPerUpdate", unit: "ratio", relativeTo: "rival" },
];

const lossColumns: Column[] = [
  { header: "unhandled", key: "unhandled", unit: "count" },
  { header: "dupes", key: "duplicates", unit: "count" },
];

/** Every scenario, in the order they run. */
export const SCENARIOS: Scenario[] = [
  {
    name: "noop",
    summary: "empty handler, 1 000 chats, concurrency 500: how fast can updates flow",
    subjects: ALL,
    repeat: true,
    plan: (quick) => ({
      scenario: "noop",
      seed: SEED,
      count: scale(quick, 100_000),
      chats: 1_000,
      concurrency: 500,
      sequentialize: false,
      handler: { kind: "none" },
      budgetMs: quick ? 20_000 : 120_000,
      stallMs: 10_000,
    }),
    columns: [
      { header: "rate", key: "rate", unit: "rate" },
      { header: "×rival", key: "rate", unit: "ratio", relativeTo: "rival" },
      { header: "×limit", key: "rate", unit: "ratio", relativeTo: "limit" },
      ...cpuColumns,
      { header: "upd/call", key: "updatesPerCall", unit: "number" },
      { header: "p50", key: "p50Ms", unit: "ms" },
      { header: "p99", key: "p99Ms", unit: "ms" },
      { header: "peak RSS", key: "peakRssMb", unit: "mb" },
      ...lossColumns,
    ],
    targets: [
      {
        label: "rate ≥ rival",
        subject: "grammyx",
        key: "rate",
        atLeast: { subject: "rival", factor: 1 },
      },
      {
        label: "rate ≥ 0.9 × limit",
        subject: "grammyx",
        key: "rate",
        atLeast: { subject: "limit", factor: 0.9 },
      },
    ],
  },
  {
    name: "io",
    summary: "handler awaits 20 ms, concurrency 500: bound = 500 / 20 ms = 25 000/s",
    subjects: ALL,
    repeat: true,
    plan: (quick) => ({
      scenario: "io",
      seed: SEED,
      count: scale(quick, 20_000),
      chats: 1_000,
      concurrency: 500,
      sequentialize: false,
      handler: { kind: "sleep", milliseconds: 20 },
      budgetMs: quick ? 4_000 : 10_000,
      stallMs: 5_000,
      analyze: ({ report }) => ({ rateVsBound: rateOf(report) / (500 / 0.02) }),
    }),
    columns: [
      { header: "rate", key: "rate", unit: "rate" },
      { header: "×bound", key: "rateVsBound", unit: "ratio" },
      { header: "×rival", key: "rate", unit: "ratio", relativeTo: "rival" },
      { header: "×limit", key: "rate", unit: "ratio", relativeTo: "limit" },
      { header: "upd/call", key: "updatesPerCall", unit: "number" },
      { header: "p50", key: "p50Ms", unit: "ms" },
      { header: "p99", key: "p99Ms", unit: "ms" },
      ...cpuColumns,
      { header: "peak RSS", key: "peakRssMb", unit: "mb" },
      ...lossColumns,
    ],
    targets: [
      { label: "rate ≥ 0.95 × bound", subject: "grammyx", key: "rateVsBound", atLeast: 0.95 },
      {
        label: "rate ≥ 0.8 × grammyx",
        subject: "grammyx-journal",
        key: "rate",
        atLeast: { subject: "grammyx", factor: 0.8 },
      },
    ],
  },
  {
    name: "hotkey",
    summary: "sequentialize, concurrency 100, half the updates from one hot chat (20 ms), " +
      "the rest from distinct cold chats (5 ms)",
    subjects: RUNNERS,
    repeat: false,
    plan: (quick) => {
      const coldChats = scale(quick, 2_000);
      return {
        scenario: "hotkey",
        seed: SEED,
        count: scale(quick, 2_000),
        chats: coldChats + 1,
        chatOf: (_, random) => random() < 0.5 ? 1 : 2 + Math.floor(random() * coldChats),
        concurrency: 100,
        sequentialize: true,
        handler: { kind: "hotCold", hotChat: 1, hotMilliseconds: 20, coldMilliseconds: 5 },
        budgetMs: quick ? 10_000 : 60_000,
        stallMs: 10_000,
        analyze: (data) => hotAndCold(data, 1, 20),
      };
    },
    columns: [
      { header: "cold p50", key: "coldP50Ms", unit: "ms" },
      { header: "cold p99", key: "coldP99Ms", unit: "ms" },
      { header: "×rival", key: "coldP99Ms", unit: "ratio", relativeTo: "rival" },
      { header: "hot done", key: "hotDoneMs", unit: "s" },
      { header: "hot serial min", key: "hotSerialMs", unit: "s" },
      { header: "×serial", key: "hotVsSerial", unit: "ratio" },
      { header: "order errs", key: "orderViolations", unit: "count" },
      { header: "overlaps", key: "overlaps", unit: "count" },
      ...lossColumns,
    ],
    targets: [
      { label: "cold p99 < 1 s", subject: "grammyx", key: "coldP99Ms", atMost: 1_000 },
      {
        label: "hot chat done ≤ 1.1 × serial minimum",
        subject: "grammyx",
        key: "hotVsSerial",
        atMost: 1.1,
      },
    ],
  },
  {
    name: "memory",
    summary: "sequentialize, empty handler, many chats: heap retained after GC and peak RSS",
    subjects: RUNNERS,
    repeat: false,
    plan: (quick) => ({
      scenario: "memory",
      seed: SEED,
      count: scale(quick, 200_000),
      chats: scale(quick, 50_000),
      concurrency: 500,
      sequentialize: true,
      handler: { kind: "none" },
      budgetMs: quick ? 20_000 : 180_000,
      stallMs: 10_000,
    }),
    columns: [
      { header: "heap retained", key: "heapRetainedMb", unit: "mb" },
      { header: "heap start", key: "heapStartMb", unit: "mb" },
      { header: "peak RSS", key: "peakRssMb", unit: "mb" },
      { header: "×rival", key: "peakRssMb", unit: "ratio", relativeTo: "rival" },
      { header: "rate", key: "rate", unit: "rate" },
      ...cpuColumns,
      { header: "order errs", key: "orderViolations", unit: "count" },
      { header: "overlaps", key: "overlaps", unit: "count" },
      ...lossColumns,
    ],
    targets: [
      { label: "heap retained ≤ 3 MB", subject: "grammyx", key: "heapRetainedMb", atMost: 3 },
      {
        label: "peak RSS ≤ rival",
        subject: "grammyx",
        key: "peakRssMb",
        atMost: { subject: "rival", factor: 1 },
      },
    ],
  },
  {
    name: "stop",
    summary: "handler 1–20 ms (seeded), concurrency 100: stop() at ~41 %, then a fresh bot " +
      "in the same process runs to the end",
    subjects: RUNNERS,
    repeat: false,
    plan: (quick) => ({
      scenario: "stop",
      seed: SEED,
      count: scale(quick, 5_000),
      chats: 1_000,
      concurrency: 100,
      sequentialize: false,
      handler: { kind: "seeded", min: 1, max: 20, seed: SEED },
      // ~41 %: not a multiple of 100, so bot.start() is stopped mid-batch.
      stopAfter: scale(quick, 2_050),
      budgetMs: quick ? 15_000 : 120_000,
      stallMs: 5_000,
    }),
    columns: [
      { header: "stop()", key: "stopMs", unit: "ms" },
      { header: "in flight", key: "inFlightAtStop", unit: "count" },
      { header: "taken", key: "takenAtStop", unit: "count" },
      { header: "confirmed unfinished", key: "confirmedUnfinished", unit: "count" },
      { header: "lost", key: "unhandled", unit: "count" },
      { header: "dupes", key: "duplicates", unit: "count" },
      { header: "rate", key: "rate", unit: "rate" },
    ],
    targets: [
      {
        label: "nothing confirmed before it finished",
        subject: "grammyx",
        key: "confirmedUnfinished",
        atMost: 0,
      },
      { label: "no update lost", subject: "grammyx", key: "unhandled", atMost: 0 },
      { label: "no update repeated", subject: "grammyx", key: "duplicates", atMost: 0 },
    ],
  },
  {
    name: "faults",
    summary: "getUpdates faults: 10 % HTTP 500, 3 % 429 (retry_after 0.05 s), 2 % cut off; " +
      "time-limited",
    subjects: RUNNERS,
    repeat: false,
    plan: (quick) => ({
      scenario: "faults",
      seed: SEED,
      count: scale(quick, 5_000),
      chats: 1_000,
      concurrency: 500,
      sequentialize: false,
      handler: { kind: "none" },
      faults: { serverError: 0.10, tooManyRequests: 0.03, retryAfter: 0.05, cut: 0.02 },
      budgetMs: quick ? 15_000 : 60_000,
      stallMs: quick ? 10_000 : 20_000,
    }),
    columns: [
      { header: "handled", key: "handled", unit: "count" },
      ...lossColumns,
      { header: "time", key: "wallMs", unit: "s" },
      { header: "getUpdates", key: "getUpdatesCalls", unit: "count" },
      { header: "faults", key: "faultsInjected", unit: "count" },
      { header: "redelivered", key: "redelivered", unit: "count" },
    ],
    targets: [
      { label: "no update lost", subject: "grammyx", key: "unhandled", atMost: 0 },
      { label: "no update repeated", subject: "grammyx", key: "duplicates", atMost: 0 },
    ],
  },
  {
    name: "cpu",
    summary: "every handler burns 2 ms of CPU, 1 000 chats: run() on one thread (grammyx) " +
      "against run() + distribute() over 2 worker threads",
    subjects: ["grammyx", "grammyx-distribute"],
    onlyListed: true,
    repeat: true,
    trial: async (plan, subject, run) => (await import("./_cpu.ts")).cpuTrial(plan, subject, run),
    plan: (quick) => ({
      scenario: "cpu",
      seed: SEED,
      count: scale(quick, 20_000),
      chats: 1_000,
      // run()'s default: cpu.ts sets no sink options.
      concurrency: 500,
      sequentialize: false,
      handler: { kind: "spin", milliseconds: 2 },
      workers: 2,
      // A hard limit: the child is killed then. cpu.ts watches no progress.
      budgetMs: quick ? 30_000 : 150_000,
      stallMs: quick ? 30_000 : 150_000,
    }),
    columns: [
      { header: "rate", key: "rate", unit: "rate" },
      { header: "×single", key: "rate", unit: "ratio", relativeTo: "grammyx" },
      { header: "time", key: "wallMs", unit: "s" },
      { header: "CPU/upd", key: "cpuUsPerUpdate", unit: "us" },
      { header: "bot CPU", key: "cpuMs", unit: "s" },
      { header: "server CPU", key: "serverCpuMs", unit: "s" },
      { header: "order errs", key: "orderViolations", unit: "count" },
      ...lossColumns,
    ],
    targets: [{
      label: "rate ≥ 1.6 × single",
      subject: "grammyx-distribute",
      key: "rate",
      atLeast: { subject: "grammyx", factor: 1.6 },
    }],
  },
  {
    name: "crash",
    summary: `SIGKILL ${KILLS} times under load, restarted each time, then SIGTERM; ` +
      "handler 1–10 ms (seeded), then sendMessage; 500 chats, concurrency 100",
    subjects: ["grammyx", "grammyx-handled", "grammyx-journal", "rival"],
    onlyListed: true,
    repeat: false,
    trial: async (plan, subject, run) =>
      (await import("./_crash.ts")).runCrashTrial(plan, subject, run),
    plan: (quick) => ({
      scenario: "crash",
      seed: SEED,
      count: quick ? 1_000 : 5_000,
      chats: 500,
      concurrency: 100,
      sequentialize: false,
      handler: { kind: "seeded", min: 1, max: 10, seed: SEED },
      kills: KILLS,
      // Per bot process: its time to reach the kill point (or the end).
      budgetMs: quick ? 15_000 : 30_000,
      stallMs: 5_000,
    }),
    columns: [
      { header: "lost", key: "unhandled", unit: "count" },
      {
        header: "lost per kill",
        key: "lostKill1",
        unit: "count",
        cell: (metrics) =>
          perKill(metrics, "lostKill", [
            ["lostAtStop", "at the stop"],
            ["lostNeverConfirmed", "never confirmed"],
          ]),
      },
      { header: "dupes", key: "duplicates", unit: "count" },
      {
        header: "dupes per kill",
        key: "duplicatesKill1",
        unit: "count",
        cell: (metrics) =>
          perKill(metrics, "duplicatesKill", [["duplicatesWithinRuns", "within a run"]]),
      },
      { header: "kills", key: "kills", unit: "count" },
      { header: "time", key: "wallMs", unit: "s" },
      { header: "last stop", key: "finalStopMs", unit: "ms" },
      { header: "getUpdates", key: "getUpdatesCalls", unit: "count" },
      { header: "redelivered", key: "redelivered", unit: "count" },
    ],
    targets: [
      { label: "loses no update", subject: "grammyx-handled", key: "unhandled", atMost: 0 },
      { label: "loses no update", subject: "grammyx-journal", key: "unhandled", atMost: 0 },
    ],
  },
];

/**
 * A crash-table cell: one figure per kill ("12, 9, 14, 11"), then the
 * `extras` that are not zero ("+3 at the stop").
 */
function perKill(metrics: Metrics, prefix: string, extras: Array<[string, string]>): string {
  const figures = Array.from({ length: KILLS }, (_, index) => metrics[`${prefix}${index + 1}`])
    .map((value) => value === undefined || !Number.isFinite(value) ? "–" : String(value));
  const more = extras.filter(([key]) => (metrics[key] ?? 0) > 0)
    .map(([key, label]) => ` +${metrics[key]} ${label}`);
  return figures.join(", ") + more.join("");
}
