/**
 * The "cpu" scenario: every handler burns 2 ms of CPU (a busy loop on
 * `performance.now()`), 20 000 updates over 1 000 chats. It compares a
 * single-thread `run()` with `run()` + `distribute(..., { count: 2 })`.
 * The fake Bot API runs in this process; the bot runs in a child process
 * (and, with `distribute`, in worker threads of that child loading this same
 * file). Prints a table and one JSON line. `deno task bench` runs the same
 * trials (`_cpu.ts`) as its "cpu" scenario, with the bench's table and JSON.
 *
 * ```sh
 * deno task --cwd bench cpu
 * deno task --cwd bench cpu --updates=4000
 * ```
 *
 * Flags (`--help` lists them; `--updates 4000` and `--updates=4000` both
 * work): `--updates 20000 --chats 1000 --burn 2` (ms per update)
 * `--count 2` (worker threads) `--runs 1` (each mode, interleaved; the
 * median is reported) `--balance 0` (the source's `speedTrafficBalance` in
 * both modes; 0 is `run()`'s default). A child that runs longer than four
 * times the single-thread work plus a minute is killed.
 *
 * @module
 */

import { Bot, type Context } from "grammy";
import { run } from "@grammyx/runner";
import { distribute } from "@grammyx/runner/distribute";
import { BotWorker } from "@grammyx/runner/worker";
import {
  type ChildReport,
  ENV,
  type Flags,
  type Mode,
  processCpuMs,
  type Trial,
  trial,
} from "./_cpu.ts";
import { CPU_USAGE, parseCpuFlags } from "./_cli.ts";

/** The scenario's handler: burn, then check order and uniqueness in this thread. */
function cpuHandler(burnMs: number): (ctx: Context) => void {
  const lastByChat = new Map<number, number>();
  const seen = new Set<number>();
  return (ctx) => {
    const until = performance.now() + burnMs;
    while (performance.now() < until) { /* keep the thread busy */ }
    const id = ctx.update.update_id;
    const chat = ctx.chat?.id ?? 0;
    if (seen.has(id)) throw new Error(`duplicate: update ${id} ran twice`);
    seen.add(id);
    const last = lastByChat.get(chat) ?? 0;
    if (id < last) throw new Error(`order: update ${id} of chat ${chat} ran after ${last}`);
    lastByChat.set(chat, id);
  };
}

// ---------------------------------------------------------------- worker thread

function workerMain(): void {
  const bot = new BotWorker(Deno.env.get(ENV.token)!, {
    client: { apiRoot: Deno.env.get(ENV.apiRoot)! },
  });
  bot.on("message", cpuHandler(Number(Deno.env.get(ENV.burn))));
}

// ---------------------------------------------------------------- child process

async function childMain(mode: Mode, expected: number, count: number): Promise<void> {
  const bot = new Bot(Deno.env.get(ENV.token)!, {
    client: { apiRoot: Deno.env.get(ENV.apiRoot)! },
  });
  const problems: string[] = [];
  let failed = 0, orderViolations = 0, duplicates = 0;
  bot.catch(({ error }) => {
    failed++;
    const text = String(error);
    if (text.includes("order:")) orderViolations++;
    if (text.includes("duplicate:")) duplicates++;
    if (problems.length < 5) problems.push(text.slice(0, 200));
  });
  if (mode === "distribute") {
    bot.use(distribute(new URL(import.meta.url), {
      count,
      onWorkerError: (failure) =>
        void problems.push(`worker ${failure.worker} crashed: ${failure.message}`),
    }));
  } else {
    bot.on("message", cpuHandler(Number(Deno.env.get(ENV.burn))));
  }
  await bot.init();

  const settledTimes = new Map<number, number>();
  let settled = 0;
  const all = Promise.withResolvers<void>();
  const cpuBefore = processCpuMs();
  const started = performance.now();
  const handle = run(bot, {
    runner: { fetch: { timeout: 1 } },
    source: { speedTrafficBalance: Number(Deno.env.get(ENV.balance) ?? 0) },
    sink: {
      onSettled: (update) => {
        settledTimes.set(update.update_id, (settledTimes.get(update.update_id) ?? 0) + 1);
        if (++settled === expected) all.resolve();
      },
    },
  });
  await all.promise;
  const elapsedMs = performance.now() - started;
  const cpuAfter = processCpuMs();
  await handle.stop();
  const report: ChildReport = {
    mode,
    elapsedMs,
    settled,
    unique: settledTimes.size,
    failed,
    orderViolations,
    duplicates: duplicates + [...settledTimes.values()].filter((times) => times > 1).length,
    problems,
    cpuMs: cpuAfter - cpuBefore,
  };
  console.log(JSON.stringify(report));
}

// ---------------------------------------------------------------- parent process

/** The 1, 5 and 15 minute load averages (empty without --allow-sys=loadavg). */
function loadAverage(): number[] {
  try {
    return Deno.loadavg();
  } catch {
    return [];
  }
}

function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function parentMain(flags: Flags): Promise<void> {
  const load = loadAverage();
  const trials: Trial[] = [];
  for (let run = 1; run <= flags.runs; run++) {
    for (const mode of ["single", "distribute"] as const) {
      const limitMs = 4 * flags.updates * flags.burn + 60_000;
      const result = await trial(mode, flags, { limitMs });
      console.error(`  ${mode} run ${run}: ${(result.elapsedMs / 1000).toFixed(2)} s`);
      trials.push(result);
    }
  }
  const summary = (mode: Mode) => {
    const own = trials.filter((trial) => trial.mode === mode);
    const seconds = median(own.map((trial) => trial.elapsedMs)) / 1000;
    const ok = own.every((trial) =>
      trial.settled === flags.updates && trial.unique === flags.updates && trial.duplicates === 0 &&
      trial.pendingAfterStop === 0 && trial.redelivered === 0
    );
    const inOrder = own.every((trial) => trial.orderViolations === 0 && trial.failed === 0);
    const cpu = (field: "cpuMs" | "serverCpuMs") => median(own.map((trial) => trial[field])) / 1000;
    return {
      seconds,
      rate: flags.updates / seconds,
      childCpuSeconds: cpu("cpuMs"),
      serverCpuSeconds: cpu("serverCpuMs"),
      everyUpdateOnce: ok,
      perChatOrder: inOrder,
      problems: own.flatMap((trial) => trial.problems).slice(0, 5),
    };
  };
  const single = summary("single");
  const spread = summary("distribute");
  const ratio = spread.rate / single.rate;

  const rows = [
    ["mode", "threads", "seconds", "updates/s", "bot CPU s", "server CPU s", "order", "once"],
    ...([["single", "1", single], ["distribute", `${flags.count}+1`, spread]] as const).map(
      ([name, threads, row]) => [
        name,
        threads,
        row.seconds.toFixed(2),
        Math.round(row.rate).toString(),
        row.childCpuSeconds.toFixed(1),
        row.serverCpuSeconds.toFixed(1),
        row.perChatOrder ? "kept" : "BROKEN",
        row.everyUpdateOnce ? "yes" : "NO",
      ],
    ),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  console.log(
    `cpu: ${flags.updates} updates over ${flags.chats} chats, ${flags.burn} ms of CPU each, ` +
      `speedTrafficBalance ${flags.balance}, ${navigator.hardwareConcurrency} cores, load ${
        load.map((value) => value.toFixed(2)).join(" ")
      }`,
  );
  for (const row of rows) {
    console.log(row.map((cell, column) => cell.padEnd(widths[column]!)).join("  "));
  }
  console.log(`throughput ratio distribute/single: ${ratio.toFixed(2)}x (target >= 1.6x)`);
  for (const problem of [...single.problems, ...spread.problems]) {
    console.log(`problem: ${problem}`);
  }
  console.log(JSON.stringify({
    scenario: "cpu",
    ...flags,
    cores: navigator.hardwareConcurrency,
    loadAverageAtStart: load,
    single,
    distribute: spread,
    ratio: Math.round(ratio * 100) / 100,
    target: 1.6,
  }));
}

// ---------------------------------------------------------------- entry

const workerScope =
  (globalThis as { WorkerGlobalScope?: abstract new () => unknown }).WorkerGlobalScope;
if (typeof workerScope === "function" && globalThis instanceof workerScope) {
  workerMain();
} else if (import.meta.main && Deno.args[0] === "--child") {
  await childMain(Deno.args[1] as Mode, Number(Deno.args[2]), Number(Deno.args[3]));
} else if (import.meta.main) {
  let flags: Flags | undefined;
  try {
    flags = parseCpuFlags(Deno.args);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${CPU_USAGE}`);
    Deno.exit(2);
  }
  if (flags === undefined) console.log(CPU_USAGE);
  else await parentMain(flags);
}
