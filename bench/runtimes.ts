/**
 * `deno task --cwd bench runtimes`: the same no-op load on Deno, Node 22 and
 * Bun. For each runtime, a bot process (`runtimes_bot.ts`: `run()` with
 * `sequentialize()` by chat, an empty handler) takes `--updates` messages
 * over `--chats` chats, pushed up front into one fake Bot API server in this
 * process (so the server is the same for every runtime). One row per
 * runtime: updates per second from `run()` to the last update handled,
 * median of `--runs` runs (taken in turns: Deno, Node, Bun, Deno, ...), and
 * the range.
 *
 * Node and Bun load the module as runtimes/pack.ts lays it out (the sources,
 * with `grammy` from npm); they are fetched with `npx -y node@22` and
 * `npx -y bun@1.4.4`, so the first run needs the npm registry.
 *
 * ```sh
 * deno task --cwd bench runtimes
 * deno task --cwd bench runtimes --updates=50000 --runs=5
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { FakeBotApi } from "@grammyx/runner/testing";
import { median } from "./_stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    updates: { type: "string", default: "20000" },
    chats: { type: "string", default: "1000" },
    runs: { type: "string", default: "3" },
  },
});
const updates = Number(values.updates);
const chats = Number(values.chats);
const runs = Number(values.runs);
for (const [name, value] of [["updates", updates], ["chats", chats], ["runs", runs]] as const) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`--${name} must be a positive integer: current value is ${values[name]}`);
    Deno.exit(2);
  }
}

const root = new URL("../", import.meta.url);
const work = await Deno.makeTempDir({ prefix: "grammyx_bench_runtimes_" });

/** Runs a command to its end; throws with its output if it fails. */
async function must(command: string, args: string[], cwd?: string): Promise<string> {
  const output = await new Deno.Command(command, {
    args,
    ...(cwd === undefined ? {} : { cwd }),
    stdin: "null",
    env: { NO_COLOR: "1", NODE_OPTIONS: "--no-warnings" },
  }).output();
  const decoder = new TextDecoder();
  if (!output.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed:\n${decoder.decode(output.stdout)}${
        decoder.decode(output.stderr)
      }`,
    );
  }
  return decoder.decode(output.stdout).trim();
}

interface Runtime {
  name: string;
  command: string;
  args: string[];
  version: string[];
}

const runtimes: Runtime[] = [
  {
    name: "Deno",
    command: Deno.execPath(),
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      new URL("runtimes_bot.ts", import.meta.url).pathname,
    ],
    version: ["eval", "console.log(Deno.version.deno)"],
  },
  {
    name: "Node",
    command: "npx",
    args: ["-y", "node@22", `${work}/smoke/runtimes_bot.ts`],
    version: ["-y", "node@22", "--version"],
  },
  {
    name: "Bun",
    command: "npx",
    args: ["-y", "bun@1.4.4", `${work}/smoke/runtimes_bot.ts`],
    version: ["-y", "bun@1.4.4", "--version"],
  },
];

/** One run: pushes the load, starts the bot process, returns updates per second. */
async function trial(runtime: Runtime): Promise<number> {
  await using api = await FakeBotApi.start();
  api.pushMessages(updates, { chats });
  const line = await must(
    runtime.command,
    [...runtime.args, api.apiRoot, api.token, String(updates)],
    new URL(".", import.meta.url).pathname,
  );
  const result = JSON.parse(line.split("\n").pop()!) as { updates: number; ms: number };
  if (result.updates !== updates || api.pending() !== 0) {
    throw new Error(`${runtime.name}: ${result.updates} handled, ${api.pending()} unconfirmed`);
  }
  return result.updates / (result.ms / 1000);
}

try {
  await must(Deno.execPath(), [
    "run",
    "--no-config",
    "--no-lock",
    "--allow-read",
    "--allow-write",
    new URL("runtimes/pack.ts", root).pathname,
    work,
    "bench/runtimes_bot.ts",
  ]);
  await must("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], work);
  const versions = await Promise.all(
    runtimes.map((runtime) => must(runtime.command, runtime.version)),
  );
  // Runs alternate between the runtimes, so that a change in the machine's
  // load falls on all of them alike.
  const rates: number[][] = runtimes.map(() => []);
  for (let run = 0; run < runs; run++) {
    for (const [index, runtime] of runtimes.entries()) rates[index]!.push(await trial(runtime));
  }
  const format = (rate: number) => Math.round(rate).toLocaleString("en-US").replaceAll(",", " ");
  const rows = runtimes.map((runtime, index) => {
    const sorted = rates[index]!.toSorted((a, b) => a - b);
    console.error(`${runtime.name}: ${rates[index]!.map(format).join(", ")} updates/s`);
    return `| ${runtime.name} ${versions[index]!.replace(/^v/, "")} | ${
      format(median(sorted))
    }/s | ${format(sorted[0]!)}–${format(sorted.at(-1)!)}/s |`;
  });
  console.log(
    `\nno-op load: ${updates} updates over ${chats} chats, run() + sequentialize(), ` +
      `median of ${runs} runs\n`,
  );
  console.log("| runtime | updates/s (median) | range |");
  console.log("| --- | --- | --- |");
  for (const row of rows) console.log(row);
} finally {
  await Deno.remove(work, { recursive: true });
}
