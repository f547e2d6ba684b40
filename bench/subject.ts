/**
 * One subject in one scenario, in its own process, so that the fake Bot API
 * (in the parent) never runs on the bot's thread. It builds a grammY `Bot`
 * for the parent's fake server, installs the scenario's handler, waits for
 * `go`, runs until every update was handled (or its budget ran out, or it
 * stalled), stops, and prints one `@report` JSON line. `bench/main.ts`
 * starts it; the only argument is a `ChildSpec` as JSON.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-env --v8-flags=--expose-gc bench/subject.ts '{"scenario":...}'
 * ```
 *
 * @module
 */

import { Bot, type Context } from "grammy";
import process from "node:process";
import {
  type ChildReport,
  type ChildSpec,
  type ChildStatus,
  delayFor,
  LineReader,
  type StopReport,
  TAG,
} from "./_protocol.ts";
import { gc, heapAfterGc, Recorder, RssSampler } from "./_recorder.ts";
import { isSubjectName, SUBJECTS } from "./_subjects.ts";
import type { Driver, Running } from "./subjects/_driver.ts";

/** How long the final stop may take before the report goes out anyway. */
const FINAL_STOP_LIMIT_MS = 10_000;

const output = Deno.stdout.writable.getWriter();
const encoder = new TextEncoder();
const stray: string[] = [];

function send(line: string): Promise<void> {
  return output.write(encoder.encode(line + "\n"));
}

function chatKey(ctx: Context): string | undefined {
  return ctx.chat?.id.toString();
}

/** The scenario's handler, wrapped in the recorder. */
function handlerFor(spec: ChildSpec, recorder: Recorder): (ctx: Context) => void | Promise<void> {
  const delay = delayFor(spec.handler);
  const spin = spec.handler.kind === "spin";
  return (ctx) => {
    const id = ctx.update.update_id;
    const chat = ctx.chat?.id ?? 0;
    recorder.start(id, chat);
    const milliseconds = delay(id, chat);
    if (milliseconds <= 0 || spin) {
      const until = performance.now() + milliseconds;
      while (performance.now() < until) { /* keep the thread busy */ }
      recorder.end(id, chat);
      return;
    }
    return new Promise<void>((resolve) => setTimeout(resolve, milliseconds))
      .then(() => recorder.end(id, chat));
  };
}

async function makeBot(spec: ChildSpec, driver: Driver, recorder: Recorder): Promise<Bot> {
  const bot = new Bot(spec.token, { client: { apiRoot: spec.apiRoot } });
  if (spec.sequentialize && driver.sequentialize) bot.use(driver.sequentialize(chatKey));
  bot.on("message", handlerFor(spec, recorder));
  bot.catch((error) => void stray.push(`bot.catch: ${String(error.error)}`.slice(0, 300)));
  await bot.init();
  return bot;
}

interface Outcome {
  status: ChildStatus;
  error?: string;
}

/** Waits until `count` updates were handled, the deadline passed, the bot stalled or crashed. */
function watch(
  running: Running,
  recorder: Recorder,
  count: number,
  deadline: number,
  stallMs: number,
): Promise<Outcome> {
  const { promise, resolve } = Promise.withResolvers<Outcome>();
  const timer = setInterval(() => {
    const now = Date.now();
    if (now > deadline) resolve({ status: "budget" });
    else if (now - recorder.lastProgressAt > stallMs) resolve({ status: "stalled" });
  }, 50);
  recorder.whenHandled(count).then(() => resolve({ status: "done" }));
  running.ended.then(
    () => resolve({ status: "crashed", error: "the runner ended by itself" }),
    (error) => resolve({ status: "crashed", error: String(error).slice(0, 500) }),
  );
  return promise.finally(() => clearInterval(timer));
}

async function stopMidway(running: Running, recorder: Recorder): Promise<StopReport> {
  const handledBefore = recorder.unique;
  const inFlight = recorder.started - recorder.ended;
  const taken = running.size?.();
  const startedAt = performance.now();
  await running.stop();
  const stopMs = performance.now() - startedAt;
  return { handledBefore, inFlight, taken, stopMs, resolvedAt: Date.now() };
}

/** Stops the runner, giving up after a while (the run is measured by then). */
async function stopAtEnd(running: Running): Promise<number> {
  const startedAt = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<void>((resolve) => timer = setTimeout(resolve, FINAL_STOP_LIMIT_MS));
  await Promise.race([running.stop().catch(() => {}), limit]);
  clearTimeout(timer);
  return performance.now() - startedAt;
}

async function main(spec: ChildSpec): Promise<ChildReport> {
  const sampler = new RssSampler(50);
  const recorder = new Recorder(spec);
  if (!isSubjectName(spec.subject)) throw new Error(`Unknown subject '${spec.subject}'`);
  const driver = await SUBJECTS[spec.subject].load();
  const input = new LineReader(Deno.stdin.readable);
  let bot = await makeBot(spec, driver, recorder);
  const heapStart = await heapAfterGc();
  await send(TAG.ready);
  if (await input.expect("go") === undefined) throw new Error("The bench closed stdin before 'go'");

  const cpuAtGo = process.cpuUsage();
  const deadline = Date.now() + spec.budgetMs;
  recorder.lastProgressAt = Date.now();
  let running = driver.start(bot, { concurrency: spec.concurrency });
  let stop: StopReport | undefined;
  let outcome: Outcome;
  if (spec.stopAfter !== undefined) {
    outcome = await watch(running, recorder, spec.stopAfter, deadline, spec.stallMs);
    if (outcome.status === "done") {
      stop = await stopMidway(running, recorder);
      await send(TAG.stopped + JSON.stringify(stop));
      await input.expect("continue");
      bot = await makeBot(spec, driver, recorder);
      recorder.lastProgressAt = Date.now();
      running = driver.start(bot, { concurrency: spec.concurrency });
    }
  }
  outcome = await watch(running, recorder, spec.expected, deadline, spec.stallMs);
  const cpu = process.cpuUsage(cpuAtGo);
  const finalStopMs = await stopAtEnd(running);
  const peakRss = sampler.stop();
  const heapEnd = await heapAfterGc();
  const base = recorder.firstStartAt;
  return {
    status: outcome.status,
    error: [outcome.error, ...stray.slice(0, 3)].filter(Boolean).join("; ") || undefined,
    unique: recorder.unique,
    duplicates: recorder.duplicates,
    orderViolations: recorder.orderViolations,
    overlaps: recorder.overlaps,
    firstStartAt: recorder.firstStartAt,
    lastEndAt: recorder.lastEndAt,
    base,
    ends: recorder.endsSince(base),
    peakRss,
    heapStart,
    heapEnd,
    gcExposed: gc !== undefined,
    stop,
    finalStopMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  stray.push(`unhandled rejection: ${String(event.reason)}`.slice(0, 300));
});

const spec = JSON.parse(Deno.args[0] ?? "{}") as ChildSpec;
try {
  const report = await main(spec);
  await send(TAG.report + JSON.stringify(report));
} catch (error) {
  console.error(error);
  await send(TAG.report + JSON.stringify({ status: "failed", error: String(error) }));
}
Deno.exit(0);
