/**
 * kill -9 under load, shared by the crash scenario (`_crash.ts`) and the
 * crash tests (`tests/crash_test.ts`). A bot in a child process
 * (`crash_subject.ts`) polls a fake Bot API that lives in this process, is
 * killed with SIGKILL `kills` times under load and started again each time,
 * then let finish and stopped with SIGTERM. Its handler sends the update id
 * back with `sendMessage` after its work: what the server received is the
 * record of what was handled. The harness counts the updates never handled
 * (lost) and those handled again (repeated), and charges each to a run.
 *
 * ```ts ignore
 * import { runCrash } from "./_crash_harness.ts";
 *
 * const outcome = await runCrash({ subject: "grammyx-journal", kills: 4, ... });
 * outcome.lost.flat(); // confirmed at the server, never handled
 * ```
 *
 * @module
 */

import { FakeBotApi, type FakeBotApiStats } from "@grammyx/runner/testing";
import { type CrashSpec, type HandlerSpec, seededInteger } from "./_protocol.ts";
import type { SubjectName } from "./_subjects.ts";
import { BOT_PROCESS_FLAGS, collectTail, kill } from "./_trial.ts";

const BENCH_DIR = new URL(".", import.meta.url);
const ROOT_DIR = new URL("..", BENCH_DIR);
const CHILD = new URL("crash_subject.ts", BENCH_DIR).pathname;
/** How long the bot may take to exit after SIGTERM. */
const STOP_LIMIT_MS = 10_000;
/** The last run is over once the server holds nothing and no message came for this long. */
const QUIET_MS = 500;
/** Lets requests of a process that just died reach the server's records. */
const SETTLE_MS = 20;

/** What to put through the kill loop. */
export interface CrashOptions {
  /** The runner under test: `grammyx`, `grammyx-handled`, `grammyx-journal` or `rival`. */
  subject: SubjectName;
  /** Seeds the chats of the updates and the kill points. */
  seed: number;
  /** Updates pushed before the first start; their ids run from 1. */
  count: number;
  /** Chat ids run from 1 to `chats`. */
  chats: number;
  concurrency: number;
  /** The sink's `maxPending` (grammyx subjects only); the runner's default without it. */
  maxPending?: number;
  /** Whether to install the subject's `sequentialize(chat id)` first. */
  sequentialize: boolean;
  /** The work before the handler sends the update id back. */
  handler: HandlerSpec;
  /** SIGKILLs, each followed by a restart; each run before one handles a seeded half to whole share. */
  kills: number;
  /** Per bot process: its time to reach the kill point (or the end). */
  budgetMs: number;
  /** A bot process that handled nothing new for this long is given up. */
  stallMs: number;
}

/** What happened in one run of the bot, from its start to its end. */
export interface RunRecord {
  /** Since the harness started. */
  startedAtMs: number;
  endedAtMs: number;
  /** Distinct updates handled when it started and when it ended. */
  handledAtStart: number;
  handledAtEnd: number;
  /** The kill point: updates to handle in this run before SIGKILL (none in the last run). */
  killAfter: number | undefined;
  /** How the wait for the kill point (or the end) ended. */
  wait: Wait;
  /** "killed" (by the harness, as planned), "exit code N" or "signal S". */
  exit: string;
  /** From SIGTERM to the exit, in the last run. */
  stopMs: number | undefined;
  /** The server's offset and message count once the process was gone. */
  offsetAtEnd: number;
  sentAtEnd: number;
}

/** How the wait for a run's kill point (or its end) ended. */
export type Wait = "reached" | "exited" | "stalled" | "out of time";

/** What the kill loop left behind. Lists are per run: index `k` is the run after kill `k`. */
export interface CrashOutcome {
  /** One record per bot process, in order. */
  runs: RunRecord[];
  /** The first run that did not end as planned (not killed while running, or not exit 0 on SIGTERM). */
  error: string | undefined;
  /** Updates pushed. */
  expected: number;
  /** Distinct updates handled. */
  handled: number;
  /** Handler runs that sent their id back, repeats included. */
  sent: number;
  /** Ids confirmed at the server during the run and never handled: lost at the kill that ended it. */
  lost: number[][];
  /** Ids never handled and never confirmed. */
  neverConfirmed: number[];
  /** Ids handled in the run that an earlier run had handled. */
  repeated: number[][];
  /** Handler runs of an id that the same run had handled already. */
  repeatedWithinRun: number[];
  /** The fake Bot API's counters at the end. */
  stats: FakeBotApiStats;
  /** What each run wrote on stderr, without Node's punycode warning. */
  stderr: string[];
  /** Lines written on stderr over all runs. */
  stderrLines: number;
}

/**
 * Runs the kill loop once.
 *
 * @param options The runner, the load, the kills and the limits
 * @returns What each run did, and the updates lost and repeated
 */
export async function runCrash(options: CrashOptions): Promise<CrashOutcome> {
  const { subject, seed, count, kills } = options;
  const startedAt = performance.now();
  const journalPath = subject === "grammyx-journal"
    ? `/tmp/grammyx-crash-${crypto.randomUUID()}.kv`
    : undefined;
  await using api = await FakeBotApi.start({ seed });
  const ids = api.pushMessages(count, { chats: options.chats });
  const spec: CrashSpec = {
    subject,
    apiRoot: api.apiRoot,
    token: api.token,
    concurrency: options.concurrency,
    sequentialize: options.sequentialize,
    handler: options.handler,
    ...(options.maxPending === undefined ? {} : { maxPending: options.maxPending }),
    ...(journalPath === undefined ? {} : { journalPath }),
  };
  const ledger = new Ledger(api, ids.at(-1) ?? 0);
  const share = count / (kills + 1);
  const runs: RunRecord[] = [];
  const stderr: string[] = [];
  let stderrLines = 0;
  let error: string | undefined;
  try {
    for (let index = 0; index <= kills && error === undefined; index++) {
      const killAfter = index < kills
        ? seededInteger(index, Math.floor(share / 2), Math.floor(share), seed)
        : undefined;
      const { record, tail } = await runBot({ api, ledger, options, spec, startedAt }, killAfter);
      runs.push(record);
      stderrLines += tail.lines;
      const text = withoutWarnings(tail.text);
      stderr.push(text);
      if (record.wait !== "reached") {
        error = `run ${index + 1} ${record.wait} (${ledger.distinct} of ${count} handled, ` +
          `${record.exit}) ${text.slice(-200)}`;
      } else if (record.exit !== (killAfter === undefined ? "exit code 0" : "killed")) {
        error = `run ${index + 1} ended with ${record.exit} ${text.slice(-200)}`;
      }
    }
  } finally {
    if (journalPath !== undefined) await removeJournal(journalPath);
  }
  return {
    runs,
    error,
    expected: count,
    handled: ledger.distinct,
    sent: api.sentMessages.length,
    ...tally(api.sentMessages, ids, runs),
    stats: api.stats,
    stderr,
    stderrLines,
  };
}

/**
 * One line on what the kills cost: "lost 12 [3, 0, 9, 0], dupes 40 [10,
 * 10, 10, 10]", per kill, then the lost ids as ranges.
 *
 * @param outcome What {@linkcode runCrash} returned
 * @param kills How many kills were planned
 * @returns The line
 */
export function describeLosses(outcome: CrashOutcome, kills: number): string {
  const { lost, repeated, neverConfirmed } = outcome;
  const perKill = (lists: number[][], from: number) =>
    lists.slice(from, from + kills).map((list) => list.length).join(", ");
  const lostCount = lost.flat().length + neverConfirmed.length;
  const lostIds = lost.slice(0, kills).map((list, kill) =>
    list.length === 0 ? "" : ` kill ${kill + 1}: ${ranges(list, 8)};`
  ).join("");
  return `lost ${lostCount} [${perKill(lost, 0)}], dupes ${outcome.sent - outcome.handled} [${
    perKill(repeated, 1)
  }]` + (lostIds === "" ? "" : `; lost ids${lostIds}`);
}

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

/** What a run of the bot works with. */
interface RunContext {
  api: FakeBotApi;
  ledger: Ledger;
  options: CrashOptions;
  spec: CrashSpec;
  /** `performance.now()` when the harness started. */
  startedAt: number;
}

/** One bot process. */
interface BotProcess {
  child: Deno.ChildProcess;
  exited: boolean;
  stderr: Promise<{ text: string; lines: number }>;
}

/**
 * Starts the bot and kills it with SIGKILL once it handled `killAfter` more
 * updates; without `killAfter` (the last run), lets it finish and stops it
 * with SIGTERM. A bot that exits by itself, stalls or runs out of time is
 * killed, and the record says so.
 */
async function runBot(
  { api, ledger, options, spec, startedAt }: RunContext,
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
        ledger.update() === options.count ||
        (api.pending() === 0 && api.longPolling() && getUpdatesCalls(api) > polls &&
          Date.now() - ledger.lastAt > QUIET_MS && performance.now() - runStartedAt > QUIET_MS)
      : () => ledger.update() - handledAtStart >= killAfter;
    const wait = await waitFor(bot, finished, ledger, options);
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

/**
 * Charges each lost update to the run in which the server's offset passed it
 * (it was confirmed, then never handled: lost at the kill that ended the
 * run), and each repeat to the run that handled it again.
 */
function tally(
  messages: ReadonlyArray<{ text: string }>,
  ids: number[],
  runs: RunRecord[],
): Pick<CrashOutcome, "lost" | "neverConfirmed" | "repeated" | "repeatedWithinRun"> {
  const firstRun = new Map<number, number>();
  const repeated: number[][] = runs.map(() => []);
  const repeatedWithinRun = runs.map(() => 0);
  let runIndex = 0;
  messages.forEach((message, index) => {
    while (runIndex < runs.length - 1 && index >= runs[runIndex]!.sentAtEnd) runIndex++;
    const id = Number(message.text);
    const first = firstRun.get(id);
    if (first === undefined) firstRun.set(id, runIndex);
    else if (first === runIndex) repeatedWithinRun[runIndex]!++;
    else repeated[runIndex]!.push(id);
  });
  const lost: number[][] = runs.map(() => []);
  const neverConfirmed: number[] = [];
  for (const id of ids) {
    if (firstRun.has(id)) continue;
    const run = runs.findIndex((record) => record.offsetAtEnd > id);
    if (run < 0) neverConfirmed.push(id);
    else lost[run]!.push(id);
  }
  return { lost, neverConfirmed, repeated, repeatedWithinRun };
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
  { budgetMs, stallMs }: CrashOptions,
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

/** Removes the journal's KV files through a child: the bench's process may not write to /tmp. */
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
