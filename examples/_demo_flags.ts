// The command line of `deno task demo` (examples/demo.ts): its flags, their
// defaults and the usage text. Flags take their value as `--updates 2000` or
// `--updates=2000`; a bad flag or value throws an error with a one-line
// message, which the demo prints above the usage before it exits with 2.

import { parseArgs } from "node:util";

/** The demo's size and pace. */
export interface DemoSettings {
  /** Message updates to push. */
  updates: number;
  /** Distinct ordinary chats. */
  chats: number;
  /** Hot chats that share 2 % of the updates. */
  hot: number;
  /** The sink's concurrency. */
  concurrency: number;
  /** Latency of each `ctx.reply`, in milliseconds. */
  latency: number;
  /** Seed of the update stream. */
  seed: number;
}

/** What the command line asked for. */
export interface DemoFlags {
  /** `--help` or `-h`: print {@linkcode DEMO_USAGE} and run nothing. */
  help: boolean;
  settings: DemoSettings;
}

/** The `--help` text, also printed under a bad flag. */
export const DEMO_USAGE = `Usage: deno task demo [flags]

Runs a bot with @grammyx/runner on an embedded fake Telegram Bot API and
verifies that every update was handled exactly once, in order per chat.
Flags take their value as --updates 2000 or --updates=2000.

  --updates N       message updates to push          (default 50000)
  --chats N         distinct chats                    (default 5000)
  --hot N           hot chats that get 2 % of all     (default 5)
  --concurrency N   sink concurrency                  (default 500)
  --latency MS      latency of each ctx.reply         (default 3)
  --seed N          seed of the update stream         (default 1)
  -h, --help        show this text`;

const DEFAULTS: DemoSettings = {
  updates: 50_000,
  chats: 5_000,
  hot: 5,
  concurrency: 500,
  latency: 3,
  seed: 1,
};

/** What each setting must be, and the test of it. */
const REQUIREMENTS: Record<keyof DemoSettings, [string, (value: number) => boolean]> = {
  updates: ["a positive integer", (value) => Number.isSafeInteger(value) && value > 0],
  chats: ["a positive integer", (value) => Number.isSafeInteger(value) && value > 0],
  hot: ["a non-negative integer", (value) => Number.isSafeInteger(value) && value >= 0],
  concurrency: ["a positive integer", (value) => Number.isSafeInteger(value) && value > 0],
  latency: ["a non-negative number", (value) => Number.isFinite(value) && value >= 0],
  seed: ["an integer", Number.isSafeInteger],
};

/**
 * Parses the demo's arguments.
 *
 * @param args `Deno.args`
 * @returns The flags, defaults filled in
 * @throws {TypeError} If a flag is unknown, lacks its value, or a value is not a number
 * @throws {RangeError} If a value is a number out of range
 */
export function parseDemoFlags(args: string[]): DemoFlags {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        help: { type: "boolean", short: "h" },
        updates: { type: "string" },
        chats: { type: "string" },
        hot: { type: "string" },
        concurrency: { type: "string" },
        latency: { type: "string" },
        seed: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    // parseArgs explains some mistakes over several lines.
    throw new TypeError(String((error as Error).message).replace(/\s*\n\s*/g, " "));
  }
  const settings = { ...DEFAULTS };
  for (const name of Object.keys(DEFAULTS) as Array<keyof DemoSettings>) {
    const text = values[name];
    if (typeof text !== "string") continue;
    const [requirement, holds] = REQUIREMENTS[name];
    const message = `Cannot run the demo as '--${name}' must be ${requirement}: ` +
      `current value is ${JSON.stringify(text)}`;
    const value = text.trim() === "" ? NaN : Number(text);
    if (Number.isNaN(value)) throw new TypeError(message);
    if (!holds(value)) throw new RangeError(message);
    settings[name] = value;
  }
  return { help: values.help === true, settings };
}
