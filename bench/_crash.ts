/**
 * The crash scenario's trial: one subject's bot in a child process
 * (`crash_subject.ts`) against a fake Bot API in this process, killed with
 * SIGKILL `plan.kills` times under load and started again each time, then let
 * finish and stopped with SIGTERM. What the bot sent back with `sendMessage`
 * (the update id, after the handler's work) is the record of what was
 * handled. The trial counts the updates never handled (lost) and those
 * handled again (duplicates), and charges each to a kill.
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

import { FakeBotApi } from "@grammyx/runner/testing";
import { type CrashSpec, seededInteger } from "./_protocol.ts";
import type { Plan } from "./_scenario.ts";
import type { SubjectName } from "./_subjects.ts";
import { BOT_PROCESS_FLAGS, collectTail, kill, type Metrics, type TrialResult } from "./_trial.ts";

const BENCH_DIR = new URL(".", import.meta.url);
const ROOT_DIR = new URL("..", BENCH_DIR);
const CHILD = new URL("crash_subject.ts", BENCH_DIR).pathname;
/** How long the bot may take to exit after SIGTERM. */
const STOP_LIMIT_MS = 10_000;
/** The last run is over once the server holds nothing and no message came for this long. */
const QUIET_MS = 500;
/** Lets requests of a process that just died reach the server's records. */
const SETTLE_MS = 20;
/** Ids kept per kill in the JSON file. */
const IDS_KEPT = 100;

/** One bot process. */
interface BotProcess {
  child: Deno.ChildProcess;
  exited: boolean;
  stderr: Promise<{ text: string; lines: number }>;
}

/** What happened in one run of the bot, from its start to its end. */
interface RunRecord {
  /** Since the trial started. */
  startedAtMs: number;
  endedAtMs: number;
  /** Distinct updates handled when it started and when it ended. */
  handledAtStart: number;
  handledAtEnd: number;
  /** The kill point: updates to handle in this run before SIGKILL (none in the last run). */
  killAfter: number | undefined;
  /** How the wait for the kill point (or the end) ended. */
  wait: Wait;
  /** "killed" (by the bench, as planned), "exit code N" or "signal S". */
  exit: string;
  /** From SIGTERM to the exit, in the last run. */
  stopMs: number | undefined;
  /** The server's offset and message count once the process was gone. */
  offsetAtEnd: number;
  sentAtEnd: number;
}

type Wait = "reached" | "exited" | "stalled" | "out of time";

/** Counts what the bot sent back, per update id. */
class Ledger {
  readonly #api: FakeBotApi;
  readonly #times: Uint16Array;
  #read = 0;
  distinct = 0;
  /** `Date.now()` when the last message was read. */
  lastAt = 0;

  constructor(api: FakeBotApi, highestId: number) {
    this.#api = api;
    this.#times = new Uint16Array(highestId + 1);
  }

  /** Reads new messages. @returns The number of distinct updates handled. */
  update(): number {
    const sent = this.#api.sentMessages;
    for (; this.#read < sent.length; this.#read++) {
      const id = Number(sent[this.#read]!.text);
      if (this.#times[id] === 0) this.distinct++;
      this.#times[id] = Math.min(this.#times[id]! + 1, 65_535);
      this.lastAt = Date.now();
    }
    return this.distinct;
  }
}

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
  const journalPath = subject === "grammyx-journal"
    ? `/tmp/grammyx-bench-crash-${crypto.randomUUID()}.kv`
    : undefined;
  await using api = await FakeBotApi.start({ seed: plan.seed });
  const ids = api.pushMessages(plan.count, { chats: plan.chats });
  const spec: CrashSpec = {
    subject,
    apiRoot: api.apiRoot,
    token: api.token,
    concurrency: plan.concurrency,
    sequentialize: plan.sequentialize,
    handler: plan.handler,
    ...(journalPath === undefined ? {} : { journalPath }),
  };
  const ledger = new Ledger(api, ids.at(-1) ?? 0);
  // Each run but the last handles a seeded half to whole share of the updates, then is killed.
  const share = plan.count / (kills + 1);
  const runs: RunRecord[] = [];
  const stderr: string[] = [];
  let stderrLines = 0;
  let error: string | undefined;
  try {
    for (let index = 0; index <= kills && error === undefined; index++) {
      const killAfter = index < kills
        ? seededInteger(index, Math.floor(share / 2), Math.floor(share), plan.seed)
        : undefined;
      const { record, tail } = await runBot({ api, ledger, plan, spec, startedAt }, killAfter);
      runs.push(record);
      stderrLines += tail.lines;
      const text = withoutWarnings(tail.text);
      if (text !== "") stderr.push(`run ${index + 1}: ${text}`);
      if (record.wait !== "reached") {
        error = `run ${index + 1} ${record.wait} (${ledger.distinct} of ${plan.count} handled, ` +
          `${record.exit}) ${text.slice(-200)}`;
      } else if (record.exit !== (killAfter === undefined ? "exit code 0" : "killed")) {
        error = `run ${index + 1} ended with ${record.exit} ${text.slice(-200)}`;
      }
    }
  } finally {
    if (journalPath !== undefined) await removeJournal(journalPath);
  }
  const outcome = analyze(api.sentMessages, ids, runs, kills);
  const lastRun = runs.at(-1);
  const stats = api.stats;
  return {
    subject,
    run,
    status: error === undefined ? "done" : "failed",
    error,
    metrics: {
      expected: plan.count,
      handled: ledger.distinct,
      unhandled: plan.count - ledger.distinct,
      duplicates: api.sentMessages.length - ledger.distinct,
      kills: runs.filter((record) => record.exit === "killed").length,
      wallMs: lastRun === undefined ? NaN : lastRun.endedAtMs - runs[0]!.startedAtMs,
      finalStopMs: lastRun?.stopMs ?? NaN,
      getUpdatesCalls: stats.requests.getUpdates ?? 0,
      redelivered: stats.redelivered,
      ...outcome.metrics,
    },
    server: {
      getUpdates: stats.requests.getUpdates ?? 0,
      errors: stats.getUpdatesErrors,
      delivered: stats.delivered,
      redelivered: stats.redelivered,
    },
    elapsedMs: performance.now() - startedAt,
    stderrTail: stderr.join("\n").slice(-4096),
    stderrLines,
    note: outcome.note,
    details: { runs, ...outcome.details },
  };
}

/** What a run of the bot works with. */
interface RunContext {
  api: FakeBotApi;
  ledger: Ledger;
  plan: Plan;
  spec: CrashSpec;
  /** `performance.now()` when the trial started. */
  startedAt: number;
}

/**
 * Starts the bot and kills it with SIGKILL once it handled `killAfter` more
 * updates; without `killAfter` (the last run), lets it finish and stops it
 * with SIGTERM. A bot that exits by itself, stalls or runs out of time is
 * killed, and the record says so.
 */
async function runBot(
  { api, ledger, plan, spec, startedAt }: RunContext,
  killAfter: number | undefined,
): Promise<{ record: RunRecord; tail: { text: string; lines: number } }> {
  const handledAtStart = ledger.update();
  const runStartedAt = performance.now();
  const polls = getUpdatesCalls(api);
  const bot = startBot(spec);
  try {
    // The last run is over when every update was handled, or when this
    // process polls with nothing left at the server and nothing sent for a while.
    const finished = killAfter === undefined
      ? () =>
        ledger.update() === plan.count ||
        (api.pending() === 0 && api.longPolling() && getUpdatesCalls(api) > polls &&
          Date.now() - ledger.lastAt > QUIET_MS && performance.now() - runStartedAt > QUIET_MS)
      : () => ledger.update() - handledAtStart >= killAfter;
    const wait = await waitFor(bot, finished, ledger, plan);
    let exit: string;
    let stopMs: number | undefined;
    if (wait === "reached" && killAfter === undefined) {
      const stopAt = performance.now();
      exit = await stopGracefully(bot);
      stopMs = performance.now() - stopAt;
    } else {
      const wasRunning = !bot.exited;
      kill(bot.child);
      const status = await bot.child.status;
      exit = wait === "reached" && wasRunning && status.signal === "SIGKILL"
        ? "killed"
        : describeExit(status);
    }
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const record: RunRecord = {
      startedAtMs: runStartedAt - startedAt,
      endedAtMs: performance.now() - startedAt,
      handledAtStart,
      handledAtEnd: ledger.update(),
      killAfter,
      wait,
      exit,
      stopMs,
      offsetAtEnd: api.offset(),
      sentAtEnd: api.sentMessages.length,
    };
    return { record, tail: await bot.stderr };
  } finally {
    if (!bot.exited) {
      kill(bot.child);
      await bot.child.status;
    }
  }
}

/** What the messages say about each kill. */
interface Outcome {
  metrics: Metrics;
  note: string;
  details: Record<string, unknown>;
}

/**
 * Charges each lost update to the kill of the run in which the server's
 * offset passed it (it was confirmed, then never handled), and each
 * duplicate to the kill before the run that sent it again.
 */
function analyze(
  messages: ReadonlyArray<{ text: string }>,
  ids: number[],
  runs: RunRecord[],
  kills: number,
): Outcome {
  const firstRun = new Map<number, number>();
  const duplicated: number[][] = runs.map(() => []);
  let duplicatesWithinRuns = 0;
  let runIndex = 0;
  messages.forEach((message, index) => {
    while (runIndex < runs.length - 1 && index >= runs[runIndex]!.sentAtEnd) runIndex++;
    const id = Number(message.text);
    const first = firstRun.get(id);
    if (first === undefined) firstRun.set(id, runIndex);
    else if (first === runIndex) duplicatesWithinRuns++;
    else duplicated[runIndex]!.push(id);
  });
  // lost[r]: confirmed during run r (r < kills: lost at kill r + 1; r = kills: at the stop).
  const lost: number[][] = runs.map(() => []);
  const neverConfirmed: number[] = [];
  for (const id of ids) {
    if (firstRun.has(id)) continue;
    const run = runs.findIndex((record) => record.offsetAtEnd > id);
    if (run < 0) neverConfirmed.push(id);
    else lost[run]!.push(id);
  }
  const metrics: Metrics = { duplicatesWithinRuns, lostNeverConfirmed: neverConfirmed.length };
  for (let kill = 1; kill <= Math.min(kills, runs.length - 1); kill++) {
    metrics[`lostKill${kill}`] = lost[kill - 1]!.length;
    metrics[`duplicatesKill${kill}`] = duplicated[kill]!.length;
  }
  if (runs.length === kills + 1) metrics.lostAtStop = lost[kills]!.length;
  const perKill = (lists: number[][], from: number) =>
    lists.slice(from, from + kills).map((list) => list.length).join(", ");
  const lostCount = lost.flat().length + neverConfirmed.length;
  const lostIds = lost.slice(0, kills).map((list, kill) =>
    list.length === 0 ? "" : ` kill ${kill + 1}: ${ranges(list, 8)};`
  ).join("");
  return {
    metrics,
    note:
      `lost ${lostCount} [${perKill(lost, 0)}], dupes ${messages.length - firstRun.size} [${
        perKill(duplicated, 1)
      }]` + (lostIds === "" ? "" : `; lost ids${lostIds}`),
    details: {
      lostIds: lost.map((list) => list.slice(0, IDS_KEPT)),
      lostNeverConfirmed: neverConfirmed.slice(0, IDS_KEPT),
      duplicatedIds: duplicated.map((list) => list.slice(0, IDS_KEPT)),
    },
  };
}

/** "3-7, 12, 15-16": ids as ranges, the first `limit` of them, then "…". */
function ranges(ids: number[], limit: number): string {
  const parts: string[] = [];
  for (let index = 0; index < ids.length;) {
    let end = index;
    while (end + 1 < ids.length && ids[end + 1] === ids[end]! + 1) end++;
    parts.push(end === index ? `${ids[index]}` : `${ids[index]}-${ids[end]}`);
    index = end + 1;
  }
  return parts.slice(0, limit).join(", ") + (parts.length > limit ? ", …" : "");
}

function getUpdatesCalls(api: FakeBotApi): number {
  return api.stats.requests.getUpdates ?? 0;
}

function startBot(spec: CrashSpec): BotProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...BOT_PROCESS_FLAGS, CHILD, JSON.stringify(spec)],
    cwd: ROOT_DIR.pathname,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const bot: BotProcess = { child, exited: false, stderr: collectTail(child.stderr) };
  child.status.then(() => bot.exited = true);
  return bot;
}

/** Waits until `finished()`, or the process exits, stalls, or runs out of time. */
async function waitFor(
  bot: BotProcess,
  finished: () => boolean,
  ledger: Ledger,
  { budgetMs, stallMs }: Plan,
): Promise<Wait> {
  const startedAt = Date.now();
  let handled = ledger.distinct;
  let progressAt = startedAt;
  while (true) {
    if (finished()) return "reached";
    if (bot.exited) return "exited";
    const now = Date.now();
    if (ledger.distinct !== handled) [handled, progressAt] = [ledger.distinct, now];
    if (now - startedAt > budgetMs) return "out of time";
    if (now - progressAt > stallMs) return "stalled";
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Sends SIGTERM and waits for the exit; SIGKILL after `STOP_LIMIT_MS`. */
async function stopGracefully(bot: BotProcess): Promise<string> {
  bot.child.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<"late">((resolve) =>
    timer = setTimeout(resolve, STOP_LIMIT_MS, "late")
  );
  const first = await Promise.race([bot.child.status, limit]);
  clearTimeout(timer);
  if (first !== "late") return describeExit(first);
  kill(bot.child);
  await bot.child.status;
  return `no exit within ${STOP_LIMIT_MS / 1000} s of SIGTERM`;
}

function describeExit(status: Deno.CommandStatus): string {
  return status.signal === null ? `exit code ${status.code}` : `signal ${status.signal}`;
}

/** Without Node's punycode deprecation warning, which grammY's npm build causes. */
function withoutWarnings(text: string): string {
  return text.split("\n")
    .filter((line) => line.trim() !== "" && !/DEP0040|trace-deprecation/.test(line))
    .join("\n");
}

/** Removes the journal's KV files through a child: this process may not write to /tmp. */
async function removeJournal(path: string): Promise<void> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-prompt", "--allow-write=/tmp", CHILD, "--remove", path],
    cwd: ROOT_DIR.pathname,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    const reason = new TextDecoder().decode(stderr).trim().split("\n")[0];
    console.error(`  crash: could not remove ${path}: ${reason}`);
  }
}
