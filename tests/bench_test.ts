// The bench's command lines (bench/_cli.ts) and its result tables (bench/_table.ts).

import assert from "node:assert/strict";
import { runScript } from "./_helpers.ts";
import { CPU_USAGE, helpText, parseCpuFlags, parseFlags } from "../bench/_cli.ts";
import { renderScenario, type Row } from "../bench/_table.ts";
import { SCENARIOS } from "../bench/scenarios.ts";
import { renderChart } from "../bench/chart.ts";
import { COLD_PERCENTILES } from "../bench/_scenario.ts";

function errorOf(parse: () => unknown): Error {
  try {
    parse();
  } catch (error) {
    assert.ok(error instanceof Error);
    return error;
  }
  assert.fail("expected an error");
}

Deno.test("bench flags take their value after a space or an equals sign", () => {
  const spaced = parseFlags(["--only", "noop,io", "--subjects", "grammyx,rival", "--runs", "5"]);
  const joined = parseFlags(["--only=noop,io", "--subjects=grammyx,rival", "--runs=5"]);
  assert.deepEqual(spaced, joined);
  assert.deepEqual(spaced.scenarios.map((scenario) => scenario.name), ["noop", "io"]);
  assert.deepEqual(spaced.subjects, ["grammyx", "rival"]);
  assert.equal(spaced.runs, 5);
  assert.equal(parseFlags(["--quick"]).runs, 1);
  assert.equal(parseFlags([]).runs, 3);

  const cpu = { updates: 4_000, chats: 1_000, burn: 0.5, count: 3, runs: 1, balance: 0.25 };
  assert.deepEqual(
    parseCpuFlags(["--updates", "4000", "--burn", "0.5", "--count=3", "--balance=0.25"]),
    cpu,
  );
  assert.equal(parseCpuFlags(["--help"]), undefined);
});

Deno.test("a bad bench flag or value throws one line naming it", () => {
  const bogus = errorOf(() => parseFlags(["--bogus"]));
  assert.ok(bogus instanceof TypeError);
  assert.equal(bogus.message, "Unknown option '--bogus'");
  const ambiguous = errorOf(() => parseFlags(["--runs", "--quick"]));
  assert.match(ambiguous.message, /^Option '--runs' argument is ambiguous\. Did you forget/);
  assert.doesNotMatch(ambiguous.message, /\n/);
  assert.equal(
    errorOf(() => parseFlags(["--runs", "0"])).message,
    "Cannot run bench as '--runs' must be a positive integer: current value is 0",
  );
  assert.match(errorOf(() => parseFlags(["--only", "nope"])).message, /unknown scenario/);

  const range = errorOf(() => parseCpuFlags(["--balance", "2"]));
  assert.ok(range instanceof RangeError);
  assert.equal(
    range.message,
    `Cannot run the cpu bench as '--balance' must be a number from 0 to 1: current value is "2"`,
  );
  assert.ok(errorOf(() => parseCpuFlags(["--updates", "lots"])) instanceof TypeError);
  assert.ok(errorOf(() => parseCpuFlags(["--updates=4000", "extra"])) instanceof TypeError);
});

Deno.test("bench entry points answer a bad flag with one line and the usage, and exit with 2", async (t) => {
  const entries: Array<[string, string]> = [["main.ts", helpText()], ["cpu.ts", CPU_USAGE]];
  for (const [entry, usage] of entries) {
    await t.step(entry, async () => {
      const { code, stderr } = await runScript(new URL(`../bench/${entry}`, import.meta.url), [
        "--bogus",
      ]);
      assert.equal(code, 2, stderr);
      assert.equal(stderr, `Unknown option '--bogus'\n\n${usage}\n`);
    });
  }
});

Deno.test("a --quick table labels its figures indicative and gives no verdict", () => {
  const noop = SCENARIOS.find((scenario) => scenario.name === "noop")!;
  const row = (subject: string, rate: number): Row => ({
    subject,
    status: "ok",
    metrics: { rate },
    runs: 1,
    spread: NaN,
  });
  const rows = [row("grammyx", 900), row("rival", 1_000), row("limit", 950)];
  const full = renderScenario(noop, rows, { quick: false }).filter((line) => !line.startsWith("|"));
  assert.ok(full.some((line) => line.startsWith("  MISS  grammyx rate ≥ rival")), full.join("\n"));
  assert.ok(full.some((line) => line.startsWith("  MET   grammyx rate ≥ 0.9 × limit")));

  const quick = renderScenario(noop, rows, { quick: true }).filter((line) => !line.startsWith("|"));
  assert.equal(quick.length, noop.targets.length);
  for (const line of quick) {
    assert.doesNotMatch(line, /\b(MET|MISS)\b/);
    assert.match(line, /indicative; the target, ≥ .*, is checked only without --quick/);
  }
});

Deno.test("the bench chart draws the cold chats' percentiles and each scenario's rates, and says what is missing", () => {
  const percentiles = Object.fromEntries(
    COLD_PERCENTILES.map(({ key }, index) => [key, 10 * (index + 1)]),
  );
  const run = {
    startedAt: "2026-12-03T08:00:00.000Z",
    command: "deno task bench",
    deno: "2.9.6",
    cores: 2,
    runs: 3,
    quick: false,
  };
  const svg = renderChart([
    {
      name: "hotkey",
      rows: [
        { subject: "grammyx", metrics: { ...percentiles, coldP99Ms: 104 } },
        { subject: "rival", metrics: { ...percentiles, coldP99Ms: 18_000 } },
      ],
    },
    {
      name: "noop",
      rows: [
        { subject: "grammyx", metrics: { rate: 75_472 } },
        { subject: "rival", metrics: { rate: 85_543 } },
        { subject: "limit", metrics: { rate: NaN } },
      ],
    },
  ], run);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="920" height="\d+"/);
  assert.equal(svg.match(/<polyline /g)?.length, 2, "one line per subject with percentiles");
  assert.equal(svg.match(/<circle /g)?.length, 2 * COLD_PERCENTILES.length);
  assert.ok(svg.includes(">p99 104 ms<") && svg.includes(">p99 18 s<"));
  assert.ok(svg.includes(">75 500/s<") && svg.includes(">85 500/s<"));
  assert.ok(!svg.includes("NaN"), "a missing figure draws no bar");
  assert.ok(svg.includes("(the io scenario was not run)"));
  assert.ok(svg.includes("@grammyjs/runner 2.0.3") && !svg.includes("<script"));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  const quick = renderChart([], { ...run, quick: true });
  assert.ok(quick.includes("--quick: indicative figures"));
  assert.ok(quick.includes("(the hotkey scenario was not run)"));
});
