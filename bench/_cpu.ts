/**
 * The parent side of the cpu scenario: one trial starts a fake Bot API in this
 * process with the updates queued, runs `cpu.ts --child <mode>` against it
 * (the bot, and with `distribute` its worker threads) and reads the child's
 * report. `cpu.ts` runs it standalone; `cpuTrial` runs it for `deno task
 * bench`. Nothing here loads grammY, so the bench process stays free of it.
 *
 * ```ts ignore
 * import { cpuTrial } from "./_cpu.ts";
 *
 * const trial = await cpuTrial(plan, "grammyx-distribute", 1);
 * trial.metrics.rate; // updates per second
 * ```
 *
 * @module
 */

import process from "node:process";
import { FakeBotApi } from "@grammyx/runner/testing";
import type { Plan } from "./_scenario.ts";
import type { Metrics, TrialResult } from "./_trial.ts";

const CPU_SCRIPT = new URL("cpu.ts", import.meta.url).pathname;

/** How the bot runs: on one thread, or with `distribute()` over worker threads. */
export type Mode = "single" | "distribute";

/** What a child process reports on its last stdout line. */
export interface ChildReport {
  mode: Mode;
  /** From `run()` until the last update settled. */
  elapsedMs: number;
  /** Updates that settled, and how many of them settled more than once. */
  settled: number;
  unique: number;
  /** Errors that reached the main bot's error handler (order or duplicate checks, failures). */
  failed: number;
  orderViolations: number;
  duplicates: number;
  problems: string[];
  /** CPU time of the child process (all threads) while it ran the updates, in ms. */
  cpuMs: number;
}

/** The environment variables that tell the child (and its workers) the server and the sizes. */
export const ENV = {
  apiRoot: "GRAMMYX_CPU_API_ROOT",
  token: "GRAMMYX_CPU_TOKEN",
  burn: "GRAMMYX_CPU_BURN",
  balance: "GRAMMYX_CPU_BALANCE",
};

/** CPU time (user + system) of this whole process, all threads, in ms. */
export function processCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** A child's report with what the parent saw. */
export interface Trial extends ChildReport {
  /** CPU time of this process (the fake Bot API) during the trial, in ms. */
  serverCpuMs: number;
  pendingAfterStop: number;
  redelivered: number;
}

/** Where the bench's trials differ from the script's. */
export interface TrialOptions {
  /** The fake Bot API's seed (its default: 1). */
  seed?: number;
  /** The child is killed after this long. */
  limitMs: number;
}

/** Thrown when a child ran out of time. */
class OutOfTime extends Error {
  override name = "OutOfTime";
}

/**
 * Runs the bot of one mode once, in a child process, against a fresh fake Bot API.
 *
 * @param mode "single" or "distribute"
 * @param flags Sizes: updates, chats, burn, worker count, balance
 * @param options The fake server's seed and the child's time limit
 * @returns The child's report with the server's figures
 * @throws {OutOfTime} if the child was killed at the limit
 * @throws {Error} if the child failed
 */
export async function trial(mode: Mode, flags: Flags, options: TrialOptions): Promise<Trial> {
  await using api = await FakeBotApi.start(
    options.seed === undefined ? {} : { seed: options.seed },
  );
  api.pushMessages(flags.updates, { chats: flags.chats });
  const cpuBefore = processCpuMs();
  const limit = AbortSignal.timeout(options.limitMs);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      CPU_SCRIPT,
      "--child",
      mode,
      String(flags.updates),
      String(flags.count),
    ],
    env: {
      [ENV.apiRoot]: api.apiRoot,
      [ENV.token]: api.token,
      [ENV.burn]: String(flags.burn),
      [ENV.balance]: String(flags.balance),
    },
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
    signal: limit,
  }).output();
  const { code, stdout, stderr } = await child;
  const cpuAfter = processCpuMs();
  const errors = new TextDecoder().decode(stderr).split("\n")
    .filter((line) => line.trim() !== "" && !line.includes("punycode"));
  if (errors.length > 0) console.error(errors.join("\n"));
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  if (limit.aborted) {
    throw new OutOfTime(`The ${mode} child was killed after ${options.limitMs / 1000} s`);
  }
  if (code !== 0) throw new Error(`The ${mode} child exited with code ${code}`);
  const report = JSON.parse(lines.at(-1)!) as ChildReport;
  return {
    ...report,
    serverCpuMs: cpuAfter - cpuBefore,
    pendingAfterStop: api.pending(),
    redelivered: api.stats.redelivered,
  };
}

/** The sizes of a cpu trial (the flags of `cpu.ts`). */
export interface Flags {
  updates: number;
  chats: number;
  burn: number;
  count: number;
  runs: number;
  balance: number;
}

/** The bench's subject for each mode. */
const MODES: Record<string, Mode> = { grammyx: "single", "grammyx-distribute": "distribute" };

/**
 * Runs one mode as a trial of the bench's "cpu" scenario: subject `grammyx`
 * is the single-thread `run()`, `grammyx-distribute` adds `distribute()`.
 *
 * @param plan The scenario's sizes (`count`, `chats`, `handler.milliseconds`, `workers`)
 * @param subject `grammyx` or `grammyx-distribute`
 * @param run Which repetition this is (1-based)
 * @returns The trial, as the bench's table and JSON file take it
 */
export async function cpuTrial(plan: Plan, subject: string, run: number): Promise<TrialResult> {
  const startedAt = performance.now();
  const mode = MODES[subject];
  const flags: Flags = {
    updates: plan.count,
    chats: plan.chats,
    burn: plan.handler.kind === "spin" ? plan.handler.milliseconds : 0,
    count: plan.workers ?? 2,
    runs: 1,
    balance: 0,
  };
  const base = { subject, run, stderrTail: "", stderrLines: 0 };
  const server = { getUpdates: NaN, errors: NaN, delivered: NaN, redelivered: NaN };
  if (mode === undefined) {
    const error = `The cpu scenario runs grammyx and grammyx-distribute, not ${subject}`;
    return { ...base, status: "failed", error, metrics: {}, server, elapsedMs: 0 };
  }
  try {
    const result = await trial(mode, flags, { seed: plan.seed, limitMs: plan.budgetMs });
    const metrics: Metrics = {
      expected: flags.updates,
      handled: result.unique,
      unhandled: flags.updates - result.unique,
      duplicates: result.duplicates,
      orderViolations: result.orderViolations,
      failed: result.failed,
      wallMs: result.elapsedMs,
      rate: result.unique / (result.elapsedMs / 1000),
      cpuMs: result.cpuMs,
      cpuUsPerUpdate: result.unique > 0 ? result.cpuMs * 1000 / result.unique : NaN,
      serverCpuMs: result.serverCpuMs,
      pendingAfterStop: result.pendingAfterStop,
      redelivered: result.redelivered,
    };
    const problems = result.problems.length > 0 ? result.problems.join("; ") : undefined;
    return {
      ...base,
      status: "done",
      error: problems,
      metrics,
      server: { ...server, redelivered: result.redelivered },
      elapsedMs: performance.now() - startedAt,
    };
  } catch (error) {
    return {
      ...base,
      status: error instanceof OutOfTime ? "timed out" : "failed",
      error: String(error),
      metrics: { expected: flags.updates },
      server,
      elapsedMs: performance.now() - startedAt,
    };
  }
}
