/**
 * The command lines of the bench (`main.ts`) and of its standalone cpu
 * scenario (`cpu.ts`): which scenarios and subjects to run, how many times,
 * and at which size. Flags take their value as `--runs 5` or `--runs=5`. Bad
 * flags throw an error with a one-line message naming the flag and the value,
 * which the entry points print above the usage before they exit with 2.
 *
 * ```ts
 * import { parseFlags } from "./_cli.ts";
 *
 * const flags = parseFlags(["--quick", "--only", "noop,io"]);
 * flags.scenarios.map((scenario) => scenario.name); // ["noop", "io"]
 * ```
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Flags as CpuFlags } from "./_cpu.ts";
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
  const values = parseStrictly(args, {
    help: { type: "boolean", short: "h", default: false },
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    subjects: { type: "string" },
    runs: { type: "string" },
  });
  const quick = values.quick === true;
  const runs = values.runs === undefined ? (quick ? 1 : 3) : Number(values.runs);
  if (!Number.isSafeInteger(runs) || runs < 1) {
    throw new TypeError(
      `Cannot run bench as '--runs' must be a positive integer: current value is ${values.runs}`,
    );
  }
  const { only, subjects } = values;
  return {
    help: values.help === true,
    quick,
    scenarios: typeof only === "string" ? listOf(only).map(scenarioNamed) : SCENARIOS,
    subjects: typeof subjects === "string" ? listOf(subjects).map(subjectNamed) : undefined,
    runs,
  };
}

/** The `--help` text of `cpu.ts`, also printed under a bad flag. */
export const CPU_USAGE = `Usage: deno task --cwd bench cpu [flags]

Compares run() with run() + distribute() on handlers that burn CPU. Flags
take their value as --updates 4000 or --updates=4000.

  --updates N   updates to push                              (default 20000)
  --chats N     distinct chats                               (default 1000)
  --burn MS     CPU time each handler burns, in ms           (default 2)
  --count N     worker threads of distribute()               (default 2)
  --runs N      runs of each mode, interleaved; medians shown (default 1)
  --balance X   the source's speedTrafficBalance, 0 to 1     (default 0)
  -h, --help    this text`;

/** What each flag of `cpu.ts` must be, and the test of it. */
const CPU_REQUIREMENTS: Record<keyof CpuFlags, [string, (value: number) => boolean]> = {
  updates: ["a positive integer", (value) => Number.isSafeInteger(value) && value > 0],
  chats: ["a positive integer", (value) => Number.isSafeInteger(value) && value > 0],
  burn: ["a non-negative number", (value) => Number.isFinite(value) && value >= 0],
  count: ["a positive integer", (value) => Number.isSafeInteger(value) && value > 0],
  runs: ["a positive integer", (value) => Number.isSafeInteger(value) && value > 0],
  balance: ["a number from 0 to 1", (value) => value >= 0 && value <= 1],
};

/**
 * Parses the arguments of `cpu.ts`.
 *
 * @param args `Deno.args`
 * @returns The flags, defaults filled in; `undefined` for `--help`
 * @throws {TypeError} If a flag is unknown, lacks its value, or a value is not a number
 * @throws {RangeError} If a value is a number out of range
 */
export function parseCpuFlags(args: string[]): CpuFlags | undefined {
  const flags: CpuFlags = { updates: 20_000, chats: 1_000, burn: 2, count: 2, runs: 1, balance: 0 };
  const names = Object.keys(flags) as Array<keyof CpuFlags>;
  const values = parseStrictly(args, {
    help: { type: "boolean", short: "h" },
    ...Object.fromEntries(names.map((name) => [name, { type: "string" } as const])),
  });
  if (values.help === true) return undefined;
  for (const name of names) {
    const text = values[name];
    if (typeof text !== "string") continue;
    const [requirement, holds] = CPU_REQUIREMENTS[name];
    const message = `Cannot run the cpu bench as '--${name}' must be ${requirement}: ` +
      `current value is ${JSON.stringify(text)}`;
    const value = text.trim() === "" ? NaN : Number(text);
    if (Number.isNaN(value)) throw new TypeError(message);
    if (!holds(value)) throw new RangeError(message);
    flags[name] = value;
  }
  return flags;
}

/** `parseArgs` without positionals or unknown flags, its errors on one line. */
function parseStrictly(
  args: string[],
  options: NonNullable<ParseArgsConfig["options"]>,
): Record<string, string | boolean | Array<string | boolean> | undefined> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    // parseArgs explains some mistakes over several lines.
    throw new TypeError(String((error as Error).message).replace(/\s*\n\s*/g, " "));
  }
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
    "Usage: deno task bench [--quick] [--only noop,io] [--subjects grammyx,rival] [--runs N]",
    "",
    "Runs each (scenario, subject) in its own bot process against a fake Bot API",
    "in this process, prints a table per scenario and writes bench/results/latest.json.",
    "Flags take their value as --runs 5 or --runs=5.",
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
