/**
 * `deno task bench`: runs every (scenario, subject) pair in its own bot
 * process against a fake Bot API that lives in this process, prints one
 * table per scenario (medians, ratios to the rival and to the limit, targets),
 * writes everything to `bench/results/latest.json` and draws the results as
 * an SVG chart (`chart.ts`): `bench/chart.svg`, the one the README shows,
 * after a full run (no `--quick`, `--only` or `--subjects`), else
 * `bench/results/chart.svg`. See `--help`. The cpu
 * scenario's trials come from `_cpu.ts`, the crash scenario's from `_crash.ts`.
 *
 * ```sh
 * deno task bench --quick
 * deno task bench --only=noop,io --subjects=grammyx,rival --runs=5
 * deno task bench --only=crash,cpu
 * ```
 *
 * @module
 */

import { type Flags, helpText, parseFlags } from "./_cli.ts";
import { renderChart } from "./chart.ts";
import { renderScenario, type Row } from "./_table.ts";
import { median, medianOf } from "./_stats.ts";
import { runTrial, type TrialResult } from "./_trial.ts";
import { type Scenario, SCENARIOS } from "./scenarios.ts";
import { runsIn, type SubjectName } from "./_subjects.ts";

const RESULTS = new URL("results/latest.json", import.meta.url);
/** The chart the README shows, drawn by a full run; a partial or `--quick` run draws its own in `results/`. */
const CHART = new URL("chart.svg", import.meta.url);
const PARTIAL_CHART = new URL("results/chart.svg", import.meta.url);

/** What the JSON file holds for a scenario. */
interface ScenarioResult {
  name: string;
  summary: string;
  plan: Record<string, unknown>;
  rows: Row[];
  targets: string[];
  trials: TrialResult[];
}

async function machineInfo(): Promise<Record<string, unknown>> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  return {
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    target: Deno.build.target,
    cores: navigator.hardwareConcurrency,
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGb: Math.round(Deno.systemMemoryInfo().total / 2 ** 30 * 10) / 10,
    loadAverageAtStart: Deno.loadavg(),
    deno: Deno.version,
  };
}

function statusOf(trials: TrialResult[]): string {
  const problems = new Set<string>();
  for (const trial of trials) {
    if (trial.status === "done") continue;
    const detail =
      trial.status === "crashed" || trial.status === "failed" || trial.status === "no report"
        ? `${trial.status}: ${(trial.error ?? "").slice(0, 60)}`
        : trial.status === "budget"
        ? "out of time (partial)"
        : trial.status;
    problems.add(detail);
  }
  return problems.size === 0 ? "ok" : [...problems].join("; ");
}

/** Half the range of `key` over the trials, relative to its median. */
function spreadOf(trials: TrialResult[], key: string): number {
  const values = trials.map((trial) => trial.metrics[key] ?? NaN).filter(Number.isFinite);
  if (values.length < 2) return NaN;
  return (Math.max(...values) - Math.min(...values)) / 2 / median(values);
}

function progress(scenario: Scenario, trial: TrialResult, runs: number): void {
  const rate = trial.metrics.rate;
  const figures = [
    `${trial.metrics.handled ?? 0}/${trial.metrics.expected ?? "?"} handled`,
    Number.isFinite(rate) ? `${Math.round(rate!)}/s` : "",
    `${(trial.elapsedMs / 1000).toFixed(1)} s`,
  ].filter(Boolean).join(", ");
  const run = runs > 1 ? ` run ${trial.run}/${runs}` : "";
  const note = trial.note === undefined ? "" : `; ${trial.note}`;
  console.error(`  ${scenario.name} ${trial.subject}${run}: ${trial.status} (${figures})${note}`);
}

/** The scenario's own subjects, or those named with `--subjects` that it can run. */
function subjectsOf(scenario: Scenario, flags: Flags): SubjectName[] {
  if (flags.subjects === undefined) return scenario.subjects;
  return flags.subjects.filter((subject) =>
    scenario.onlyListed ? scenario.subjects.includes(subject) : runsIn(subject, scenario.subjects)
  );
}

/** Runs a scenario: every run, every subject in turn (interleaved, so drift hits all alike). */
async function runScenario(scenario: Scenario, flags: Flags): Promise<ScenarioResult> {
  const plan = scenario.plan(flags.quick);
  const subjects = subjectsOf(scenario, flags);
  const runs = scenario.repeat ? flags.runs : 1;
  const runOne = scenario.trial ?? runTrial;
  const trials: TrialResult[] = [];
  for (let run = 1; run <= runs; run++) {
    for (const subject of subjects) {
      const trial = await runOne(plan, subject, run);
      progress(scenario, trial, runs);
      trials.push(trial);
    }
  }
  const rows: Row[] = subjects.map((subject) => {
    const own = trials.filter((trial) => trial.subject === subject);
    return {
      subject,
      status: statusOf(own),
      metrics: medianOf(own.map((trial) => trial.metrics)),
      runs,
      spread: spreadOf(own, scenario.columns[0]!.key),
    };
  });
  const lines = renderScenario(scenario, rows, flags);
  const { analyze: _, chatOf: __, ...data } = plan;
  return {
    name: scenario.name,
    summary: scenario.summary,
    plan: data,
    rows,
    targets: lines.filter((line) => !line.startsWith("|")),
    trials,
  };
}

function heading(scenario: Scenario, flags: Flags): string {
  const plan = scenario.plan(flags.quick);
  const runs = scenario.repeat ? flags.runs : 1;
  return `\n## ${scenario.name}: ${
    plan.count.toLocaleString("en-US")
  } updates, ${scenario.summary}` +
    (runs > 1 ? ` (medians of ${runs} runs)` : "") +
    (flags.quick ? " (--quick: indicative figures)" : "");
}

async function main(): Promise<void> {
  let flags: Flags;
  try {
    flags = parseFlags(Deno.args);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${helpText()}`);
    Deno.exit(2);
  }
  if (flags.help) {
    console.log(helpText());
    return;
  }
  const startedAt = new Date();
  const machine = await machineInfo();
  console.log(
    `# grammyx bench${flags.quick ? " --quick" : ""}: ${startedAt.toISOString()}, ` +
      `deno ${Deno.version.deno}, ${machine.cores} cores, ${machine.os}`,
  );
  if (flags.quick) {
    console.log(
      "\n--quick: a tenth of the updates, so the figures are indicative only and no " +
        "target gets a MET/MISS verdict. Run without --quick to check the targets.",
    );
  }
  const results: ScenarioResult[] = [];
  for (const scenario of flags.scenarios) {
    console.error(`${scenario.name}…`);
    const result = await runScenario(scenario, flags);
    results.push(result);
    console.log(heading(scenario, flags));
    console.log(renderScenario(scenario, result.rows, flags).join("\n"));
    await writeResults({ startedAt, flags, machine, results, finished: false });
  }
  const totalMs = Date.now() - startedAt.getTime();
  machine.loadAverageAtEnd = Deno.loadavg();
  await writeResults({ startedAt, flags, machine, results, finished: true });
  const full = !flags.quick && flags.subjects === undefined &&
    flags.scenarios.length === SCENARIOS.length;
  const chart = full ? CHART : PARTIAL_CHART;
  await Deno.writeTextFile(
    chart,
    renderChart(results, {
      startedAt: startedAt.toISOString(),
      command: ["deno task bench", ...Deno.args].join(" "),
      deno: Deno.version.deno,
      cores: navigator.hardwareConcurrency,
      runs: flags.runs,
      quick: flags.quick,
      load: [
        (machine.loadAverageAtStart as number[])[0]!,
        (machine.loadAverageAtEnd as number[])[0]!,
      ],
    }),
  );
  const load = (values: unknown) => (values as number[]).map((value) => value.toFixed(1)).join(" ");
  console.log(
    `\nTotal ${(totalMs / 1000).toFixed(1)} s. Load average (1/5/15 min) at start ` +
      `${load(machine.loadAverageAtStart)}, at end ${load(machine.loadAverageAtEnd)} ` +
      `on ${machine.cores} cores. Full results: bench/results/latest.json; chart: ` +
      `bench/${full ? "" : "results/"}chart.svg`,
  );
}

async function writeResults(
  { startedAt, flags, machine, results, finished }: {
    startedAt: Date;
    flags: Flags;
    machine: Record<string, unknown>;
    results: ScenarioResult[];
    finished: boolean;
  },
): Promise<void> {
  const document = {
    startedAt: startedAt.toISOString(),
    totalMs: Date.now() - startedAt.getTime(),
    finished,
    args: Deno.args,
    quick: flags.quick,
    runs: flags.runs,
    subjects: flags.subjects ?? "each scenario's own",
    machine,
    scenarios: results,
  };
  await Deno.mkdir(new URL(".", RESULTS), { recursive: true });
  await Deno.writeTextFile(RESULTS, JSON.stringify(document, null, 2) + "\n");
}

if (import.meta.main) await main();
