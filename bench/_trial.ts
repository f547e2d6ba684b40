/**
 * One trial: one subject in one scenario, once. It starts a fresh fake Bot API
 * with the scenario's seed, starts the subject process, pushes the updates
 * when the bot is ready, relays the stop handshake, kills the process at the
 * hard time limit, and turns the child's report into flat metrics (latency
 * comes from the server's `enqueuedAt` and the child's handler end times).
 *
 * ```ts ignore
 * import { runTrial } from "./_trial.ts";
 *
 * const trial = await runTrial(plan, "grammyx", 1);
 * trial.metrics.rate; // updates per second
 * ```
 *
 * @module
 */

import { FakeBotApi } from "@grammyx/runner/testing";
import { type ChildReport, type ChildSpec, LineReader, type StopReport, TAG } from "./_protocol.ts";
import { percentile } from "./_stats.ts";
import type { Plan, TrialData } from "./_scenario.ts";

/** Flat numbers per trial; the table and the medians work on these. */
export type Metrics = Record<string, number>;

/** What one trial gave. */
export interface TrialResult {
  subject: string;
  run: number;
  /** The child's status, or "timed out" (killed) / "no report". */
  status: string;
  error: string | undefined;
  metrics: Metrics;
  /** Counters of the fake Bot API at the end. */
  server: { getUpdates: number; errors: number; delivered: number; redelivered: number };
  /** Wall time of the whole trial, child start-up included. */
  elapsedMs: number;
  /** The last lines the child wrote on stderr, and how many it wrote. */
  stderrTail: string;
  stderrLines: number;
  /** A line for the progress output, if the trial has more to say than counts. */
  note?: string;
  /** What the scenario's own trial recorded beyond metrics (for the JSON file). */
  details?: unknown;
}

const BENCH_DIR = new URL(".", import.meta.url);
const ROOT_DIR = new URL("..", BENCH_DIR);
/** What the child needs on top of its budget: start-up, stop, GC, report. */
const HARD_LIMIT_GRACE_MS = 25_000;
/** `deno run` with what every bot process of the bench may do (loopback, a temp KV file). */
export const BOT_PROCESS_FLAGS = [
  "run",
  "--quiet",
  "--no-prompt",
  `--config=${new URL("deno.json", ROOT_DIR).pathname}`,
  "--allow-net=127.0.0.1",
  "--allow-env",
  "--allow-read",
  "--allow-write=/tmp",
  "--unstable-kv",
];
const CHILD_FLAGS = [
  ...BOT_PROCESS_FLAGS,
  "--allow-sys",
  "--v8-flags=--expose-gc",
  new URL("subject.ts", BENCH_DIR).pathname,
];

/**
 * Runs one subject through one scenario plan.
 *
 * @param plan The scenario's sizes, handler and analysis
 * @param subject The subject's name
 * @param run Which repetition this is (1-based)
 * @returns The trial's status and metrics
 */
export async function runTrial(plan: Plan, subject: string, run: number): Promise<TrialResult> {
  const startedAt = performance.now();
  await using api = await FakeBotApi.start({ seed: plan.seed, faults: plan.faults ?? {} });
  const child = spawnSubject(specFor(plan, subject, api));
  let killed = false;
  const killer = setTimeout(() => {
    killed = true;
    kill(child);
  }, plan.budgetMs + HARD_LIMIT_GRACE_MS);
  const stderr = collectTail(child.stderr);
  const stdout = new LineReader(child.stdout);
  let conversation: Conversation | undefined;
  try {
    conversation = await converse(plan, api, child, stdout);
  } finally {
    clearTimeout(killer);
    if (conversation?.report === undefined && !killed) kill(child);
    await child.status;
  }
  const { report, chats, offsetAtStop } = conversation;
  const tail = await stderr;
  const { server, metrics: serverMetrics } = serverFigures(api);
  const untagged = stdout.untagged.length > 0 ? `; stdout: ${stdout.untagged.join(" | ")}` : "";
  return {
    subject,
    run,
    status: killed ? "timed out" : report?.status ?? "no report",
    error: report?.error ?? (report === undefined ? `no report${untagged}` : undefined),
    metrics: report?.ends === undefined
      ? serverMetrics
      : { ...metricsOf(plan, report as ChildReport, api, chats, offsetAtStop), ...serverMetrics },
    server,
    elapsedMs: performance.now() - startedAt,
    stderrTail: tail.text,
    stderrLines: tail.lines,
  };
}

function specFor(plan: Plan, subject: string, api: FakeBotApi): ChildSpec {
  return {
    scenario: plan.scenario,
    subject,
    apiRoot: api.apiRoot,
    token: api.token,
    expected: plan.count,
    firstId: 1,
    chats: plan.chats,
    concurrency: plan.concurrency,
    sequentialize: plan.sequentialize,
    handler: plan.handler,
    ...(plan.stopAfter === undefined ? {} : { stopAfter: plan.stopAfter }),
    budgetMs: plan.budgetMs,
    stallMs: plan.stallMs,
  };
}

function spawnSubject(spec: ChildSpec): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [...CHILD_FLAGS, JSON.stringify(spec)],
    cwd: ROOT_DIR.pathname,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** What the parent learnt while talking to the child. */
interface Conversation {
  report: Partial<ChildReport> | undefined;
  /** Chat id per update index. */
  chats: Int32Array;
  /** The server's offset right after the child's mid-run `stop()` resolved. */
  offsetAtStop: number | undefined;
}

/** Pushes the updates once the child is ready, relays the stop handshake, reads the report. */
async function converse(
  plan: Plan,
  api: FakeBotApi,
  child: Deno.ChildProcess,
  stdout: LineReader,
): Promise<Conversation> {
  const stdin = child.stdin.getWriter();
  const say = (line: string) => stdin.write(new TextEncoder().encode(line + "\n")).catch(() => {});
  const conversation: Conversation = {
    report: undefined,
    chats: new Int32Array(plan.count),
    offsetAtStop: undefined,
  };
  try {
    if (await stdout.expect(TAG.ready) === undefined) return conversation;
    const chatOf = plan.chatOf ??
      ((_: number, random: () => number) => 1 + Math.floor(random() * plan.chats));
    api.pushMessages(plan.count, {
      chats: plan.chats,
      chatOf: (index, random) => conversation.chats[index] = chatOf(index, random),
    });
    await say("go");
    if (plan.stopAfter !== undefined && await stdout.expect(TAG.stopped) !== undefined) {
      conversation.offsetAtStop = api.offset();
      await say("continue");
    }
    const line = await stdout.expect(TAG.report);
    if (line !== undefined) conversation.report = JSON.parse(line) as Partial<ChildReport>;
    return conversation;
  } finally {
    await stdin.close().catch(() => {});
  }
}

/** The fake Bot API's counters, raw and as metrics. */
function serverFigures(api: FakeBotApi): { server: TrialResult["server"]; metrics: Metrics } {
  const stats = api.stats;
  const server = {
    getUpdates: stats.requests.getUpdates ?? 0,
    errors: stats.getUpdatesErrors,
    delivered: stats.delivered,
    redelivered: stats.redelivered,
  };
  const metrics = {
    getUpdatesCalls: server.getUpdates,
    faultsInjected: server.errors,
    redelivered: server.redelivered,
    updatesPerCall: server.getUpdates > 0 ? server.delivered / server.getUpdates : NaN,
  };
  return { server, metrics };
}

function metricsOf(
  plan: Plan,
  report: ChildReport,
  api: FakeBotApi,
  chats: Int32Array,
  offsetAtStop: number | undefined,
): Metrics {
  const latencies: number[] = [];
  for (const [index, end] of report.ends.entries()) {
    if (end >= 0) latencies.push(report.base + end - (api.enqueuedAt(index + 1) ?? NaN));
  }
  latencies.sort((a, b) => a - b);
  const wallMs = report.lastEndAt - report.firstStartAt;
  const metrics: Metrics = {
    expected: plan.count,
    handled: report.unique,
    unhandled: plan.count - report.unique,
    duplicates: report.duplicates,
    orderViolations: report.orderViolations,
    overlaps: report.overlaps,
    wallMs,
    rate: wallMs > 0 ? report.unique / (wallMs / 1000) : NaN,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    peakRssMb: report.peakRss / 2 ** 20,
    heapStartMb: report.heapStart / 2 ** 20,
    heapEndMb: report.heapEnd / 2 ** 20,
    heapRetainedMb: report.gcExposed ? (report.heapEnd - report.heapStart) / 2 ** 20 : NaN,
    finalStopMs: report.finalStopMs,
    cpuUsPerUpdate: report.unique > 0 ? report.cpuMs * 1000 / report.unique : NaN,
  };
  if (report.stop !== undefined) {
    Object.assign(metrics, stopMetrics(report, report.stop, offsetAtStop));
  }
  const data: TrialData = { report, chats, enqueuedAt: (id: number) => api.enqueuedAt(id) ?? NaN };
  return { ...metrics, ...plan.analyze?.(data) };
}

/** What the mid-run stop cost: its duration, and what it confirmed before it was done. */
function stopMetrics(
  report: ChildReport,
  stop: StopReport,
  offsetAtStop: number | undefined,
): Metrics {
  let confirmedUnfinished = 0;
  const confirmedBelow = offsetAtStop ?? 0;
  for (let id = 1; id < confirmedBelow && id <= report.ends.length; id++) {
    const end = report.ends[id - 1]!;
    if (end < 0 || report.base + end > stop.resolvedAt) confirmedUnfinished++;
  }
  return {
    stopMs: stop.stopMs,
    inFlightAtStop: stop.inFlight,
    takenAtStop: stop.taken ?? NaN,
    handledAtStop: stop.handledBefore,
    confirmedUnfinished,
  };
}

/**
 * Kills a child with SIGKILL, if it still runs.
 *
 * @param child The process
 */
export function kill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch {
    // It has exited already.
  }
}

/**
 * Drains a stream, keeping its last 4 KB and counting lines.
 *
 * @param stream A child's stderr
 * @returns The tail and the line count, once the stream ended
 */
export async function collectTail(
  stream: ReadableStream<Uint8Array>,
): Promise<{ text: string; lines: number }> {
  let text = "";
  let lines = 0;
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    lines += chunk.split("\n").length - 1;
    text = (text + chunk).slice(-4096);
  }
  return { text, lines };
}
