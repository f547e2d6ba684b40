// kill -9 under load, through the kill loop the bench's crash scenario uses
// (bench/_crash_harness.ts): a bot in a child process polls the fake Bot API
// that lives here, and is killed and restarted several times. What it sent
// back with sendMessage (the update id, after the work) is the record of what
// was handled.

import assert from "node:assert/strict";
import {
  type CrashOptions,
  type CrashOutcome,
  describeLosses,
  runCrash,
} from "../bench/_crash_harness.ts";

const UPDATES = 2_000;
const KILLS = 4;
/** The child's sink holds at most 40 updates taken and not finished (`maxPending`). */
const MAX_PENDING = 40;
/**
 * What may run twice after a kill. With the journal: the updates in flight
 * (taken and not finished, or finished and not yet recorded: the runner
 * records finished ids every 10 ms or 100 ids, so one batch being written
 * and one being collected). With `confirm: "handled"`: the updates taken
 * above the oldest unfinished one, fewer than one getUpdates answer (100).
 */
const BOUNDS = { journal: MAX_PENDING + 2 * 100, handled: 100 } as const;

/** 2 000 updates over 50 chats, each handled in 1–10 ms, 20 at once, killed 4 times. */
function crash(subject: CrashOptions["subject"], seed: number): Promise<CrashOutcome> {
  return runCrash({
    subject,
    seed,
    count: UPDATES,
    chats: 50,
    concurrency: 20,
    maxPending: MAX_PENDING,
    sequentialize: true,
    handler: { kind: "seeded", min: 1, max: 10, seed },
    kills: KILLS,
    budgetMs: 30_000,
    stallMs: 10_000,
  });
}

/** Every update lost, confirmed or not. */
function lost(outcome: CrashOutcome): number[] {
  return [...outcome.lost.flat(), ...outcome.neverConfirmed];
}

/** Per run, the handler runs of an update that had been handled before it. */
function repeatsPerRun(outcome: CrashOutcome): number[] {
  return outcome.repeated.map((ids, run) => ids.length + outcome.repeatedWithinRun[run]!);
}

function describe(outcome: CrashOutcome): string {
  const stderr = outcome.stderr.map((text, run) => text === "" ? "" : `run ${run + 1}: ${text}`)
    .filter(Boolean).join("\n").slice(-2_000);
  return [
    `${outcome.handled} of ${UPDATES} updates handled (${outcome.sent} runs);`,
    `${describeLosses(outcome, KILLS)};`,
    `repeats per run [${repeatsPerRun(outcome).join(", ")}]`,
    stderr === "" ? "" : `\nbot stderr:\n${stderr}`,
  ].join(" ");
}

/** Kills the subject's bot under load; nothing may be lost, and each run may repeat at most `bound`. */
async function assertNothingLost(
  subject: CrashOptions["subject"],
  seed: number,
  bound: number,
): Promise<void> {
  const outcome = await crash(subject, seed);
  const report = describe(outcome);
  assert.equal(outcome.error, undefined, report);
  assert.deepEqual(lost(outcome), [], report);
  assert.ok(repeatsPerRun(outcome).every((repeats) => repeats <= bound), report);
}

Deno.test("kill -9 under load with a KV journal: nothing is lost, and only updates in flight at a kill run twice", () =>
  assertNothingLost("grammyx-journal", 11, BOUNDS.journal));

Deno.test('kill -9 under load with confirm: "handled": nothing is lost, and only updates in flight at a kill run twice', () =>
  assertNothingLost("grammyx-handled", 12, BOUNDS.handled));

Deno.test('kill -9 under load with confirm: "fetched" (control): the run goes on, and may lose what was in flight', async () => {
  const outcome = await crash("grammyx", 13);
  const report = describe(outcome);
  assert.equal(outcome.error, undefined, report);
  assert.ok(outcome.handled > UPDATES / 2, report);
  assert.equal(outcome.handled + lost(outcome).length, UPDATES, report);
});
