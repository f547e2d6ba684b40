/**
 * The bench's command line: which scenarios and subjects to run, how many
 * times, and at which size. Bad flags throw a `TypeError` naming the flag and
 * the value, which `main.ts` prints with the help text.
 *
 * ```ts
 * import { parseFlags } from "./_cli.ts";
 *
 * const flags = parseFlags(["--quick", "--only=noop,io"]);
 * flags.scenarios.map((scenario) => scenario.name); // ["noop", "io"]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isSubjectName, type SubjectName, SUBJECTS } from "./_subjects.ts";
import { type Scenario, SCENARIOS } from "./scenarios.ts";

/** What the command line asked for. */
export interface Flags {
  help: boolean;
  quick: boolean;
  scenarios: Scenario[];
  /** The subjects named with `--subjects`; `undefined`: each scenario's own list. */
  subjects: SubjectName[] | undefined;
  /** Runs of throughput scenarios (the others run once); medians are shown. */
  runs: number;
}

/**
 * Parses the bench's arguments.
 *
 * @param args `Deno.args`
 * @returns The flags, defaults filled in
 * @throws {TypeError} if a flag or a name is unknown, or `--runs` is not a positive integer
 */
export function parseFlags(args: string[]): Flags {
  const { values } = parseArgs({
    args,
    options: {
      help: { type: "boolean", short: "h", default: false },
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      subjects: { type: "string" },
      runs: { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  const quick = values.quick ?? false;
  const runs = values.runs === undefined ? (quick ? 1 : 3) : Number(values.runs);
  if (!Number.isSafeInteger(runs) || runs < 1) {
    throw new TypeError(
      `Cannot run bench as '--runs' must be a positive integer: current value is ${values.runs}`,
    );
  }
  return {
    help: values.help ?? false,
    quick,
    scenarios: values.only === undefined ? SCENARIOS : listOf(values.only).map(scenarioNamed),
    subjects: values.subjects === undefined ? undefined : listOf(values.subjects).map(subjectNamed),
    runs,
  };
}

function listOf(value: string): string[] {
  return value.split(",").map((name) => name.trim()).filter((name) => name !== "");
}

function scenarioNamed(name: string): Scenario {
  const scenario = SCENARIOS.find((candidate) => candidate.name === name);
  if (scenario === undefined) {
    throw new TypeError(
      `Cannot run bench as '--only' names an unknown scenario: current value is ${name}`,
    );
  }
  return scenario;
}

function subjectNamed(name: string): SubjectName {
  if (!isSubjectName(name)) {
    throw new TypeError(
      `Cannot run bench as '--subjects' names an unknown subject: current value is ${name}`,
    );
  }
  return name;
}

/** The `--help` text. */
export function helpText(): string {
  const scenarios = SCENARIOS.flatMap((scenario) => [
    `  ${scenario.name.padEnd(20)}${scenario.summary}`,
    `  ${"".padEnd(20)}(${scenario.subjects.join(", ")})`,
  ]);
  const subjects = Object.entries(SUBJECTS).map(([name, subject]) =>
    `  ${name.padEnd(20)}${subject.summary}`
  );
  return [
    "Usage: deno task bench [--quick] [--only=noop,io] [--subjects=grammyx,rival] [--runs=N]",
    "",
    "Runs each (scenario, subject) in its own bot process against a fake Bot API",
    "in this process, prints a table per scenario and writes bench/results/latest.json.",
    "",
    "  --quick          a tenth of the updates, a fifth in crash: a smoke test whose",
    "                   figures are indicative, with no MET/MISS verdict on targets",
    "  --only=LIST      scenarios to run (default: all)",
    "  --subjects=LIST  subjects to run, in the scenarios that can run them",
    "                   (default: each scenario's own, in parentheses below)",
    "  --runs=N         runs of the throughput scenarios, medians shown",
    "                   (default: 3, or 1 with --quick)",
    "  --help           this text",
    "",
    "Scenarios:",
    ...scenarios,
    "",
    "Subjects:",
    ...subjects,
  ].join("\n");
}
