// The bench's result tables (bench/_table.ts).

import assert from "node:assert/strict";
import { renderScenario, type Row } from "../bench/_table.ts";
import { SCENARIOS } from "../bench/scenarios.ts";

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
