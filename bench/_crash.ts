/**
 * The crash scenario's trial: one subject through the kill loop of
 * `_crash_harness.ts` (SIGKILL `plan.kills` times under load, a restart after
 * each, then SIGTERM), its lost and repeated updates turned into the bench's
 * metrics, each charged to a kill.
 *
 * ```ts ignore
 * import { runCrashTrial } from "./_crash.ts";
 *
 * const trial = await runCrashTrial(plan, "grammyx-journal", 1);
 * trial.metrics.unhandled; // updates never handled
 * ```
 *
 * @module
 */

import { describeLosses, runCrash } from "./_crash_harness.ts";
import type { Plan } from "./_scenario.ts";
import type { SubjectName } from "./_subjects.ts";
import type { Metrics, TrialResult } from "./_trial.ts";

/** Ids kept per kill in the JSON file. */
const IDS_KEPT = 100;

/**
 * Runs one subject through the crash scenario.
 *
 * @param plan The scenario's sizes, handler, kills and limits
 * @param subject grammyx, grammyx-handled, grammyx-journal or rival
 * @param run Which repetition this is (1-based)
 * @returns Lost and repeated updates, in total and per kill
 */
export async function runCrashTrial(
  plan: Plan,
  subject: SubjectName,
  run: number,
): Promise<TrialResult> {
  const startedAt = performance.now();
  const kills = plan.kills ?? 0;
  const outcome = await runCrash({
    subject,
    seed: plan.seed,
    count: plan.count,
    chats: plan.chats,
    concurrency: plan.concurrency,
    sequentialize: plan.sequentialize,
    handler: plan.handler,
    kills,
    budgetMs: plan.budgetMs,
    stallMs: plan.stallMs,
  });
  const { runs, stats, lost, repeated } = outcome;
  const lastRun = runs.at(-1);
  const metrics: Metrics = {
    expected: outcome.expected,
    handled: outcome.handled,
    unhandled: outcome.expected - outcome.handled,
    duplicates: outcome.sent - outcome.handled,
    kills: runs.filter((record) => record.exit === "killed").length,
    wallMs: lastRun === undefined ? NaN : lastRun.endedAtMs - runs[0]!.startedAtMs,
    finalStopMs: lastRun?.stopMs ?? NaN,
    getUpdatesCalls: stats.requests.getUpdates ?? 0,
    redelivered: stats.redelivered,
    duplicatesWithinRuns: outcome.repeatedWithinRun.reduce((sum, n) => sum + n, 0),
    lostNeverConfirmed: outcome.neverConfirmed.length,
  };
  for (let kill = 1; kill <= Math.min(kills, runs.length - 1); kill++) {
    metrics[`lostKill${kill}`] = lost[kill - 1]!.length;
    metrics[`duplicatesKill${kill}`] = repeated[kill]!.length;
  }
  if (runs.length === kills + 1) metrics.lostAtStop = lost[kills]!.length;
  return {
    subject,
    run,
    status: outcome.error === undefined ? "done" : "failed",
    error: outcome.error,
    metrics,
    server: {
      getUpdates: stats.requests.getUpdates ?? 0,
      errors: stats.getUpdatesErrors,
      delivered: stats.delivered,
      redelivered: stats.redelivered,
    },
    elapsedMs: performance.now() - startedAt,
    stderrTail: outcome.stderr.map((text, index) => text === "" ? "" : `run ${index + 1}: ${text}`)
      .filter(Boolean).join("\n").slice(-4096),
    stderrLines: outcome.stderrLines,
    note: describeLosses(outcome, kills),
    details: {
      runs,
      lostIds: lost.map((list) => list.slice(0, IDS_KEPT)),
      lostNeverConfirmed: outcome.neverConfirmed.slice(0, IDS_KEPT),
      duplicatedIds: repeated.map((list) => list.slice(0, IDS_KEPT)),
    },
  };
}
