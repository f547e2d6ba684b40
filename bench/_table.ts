/**
 * Renders a scenario's results: one row per subject with the scenario's
 * columns (medians over runs), ratios to other subjects, a status column,
 * and one line per target saying whether it was met and by what margin. A
 * `--quick` run's figures are too small to judge, so its target lines give
 * the figure and the bound as indicative, without a verdict.
 *
 * ```ts ignore
 * import { renderScenario } from "./_table.ts";
 *
 * console.log(renderScenario(scenario, rows, { quick: false }).join("\n"));
 * ```
 *
 * @module
 */

import { formatValue, type Unit } from "./_stats.ts";
import type { Scenario, Target, Threshold } from "./_scenario.ts";
import type { Metrics } from "./_trial.ts";

/** One subject's results in one scenario. */
export interface Row {
  subject: string;
  /** "ok", or what went wrong in any run. */
  status: string;
  /** Medians over the runs. */
  metrics: Metrics;
  runs: number;
  /** Half the range of the first column's metric over the runs, relative to its median. */
  spread: number;
}

/** How a scenario's results are rendered. */
export interface RenderOptions {
  /** A `--quick` run: figures are indicative, targets get no verdict. */
  quick: boolean;
}

/**
 * Renders a scenario as a Markdown table plus target lines.
 *
 * @param scenario The scenario (columns, targets)
 * @param rows One row per subject that ran
 * @param options Whether the figures come from a `--quick` run
 * @returns The lines to print
 */
export function renderScenario(
  scenario: Scenario,
  rows: Row[],
  { quick }: RenderOptions,
): string[] {
  const bySubject = new Map(rows.map((row) => [row.subject, row]));
  const cellsOf = (row: Row) =>
    scenario.columns.map((column) => {
      if (column.cell !== undefined) return column.cell(row.metrics);
      const value = row.metrics[column.key];
      if (column.relativeTo === undefined) return formatValue(value, column.unit);
      const reference = bySubject.get(column.relativeTo)?.metrics[column.key];
      return formatValue(
        value !== undefined && reference !== undefined ? value / reference : NaN,
        "ratio",
      );
    });
  // With repeated runs, the spread of the first figure follows it.
  const repeated = rows.some((row) => row.runs > 1);
  const withSpread = (cells: string[], spread: string) =>
    repeated ? [cells[0]!, spread, ...cells.slice(1)] : cells;
  const header = [
    "subject",
    ...withSpread(scenario.columns.map((column) => column.header), "±"),
    "status",
  ];
  const body = rows.map((row) => [
    row.runs > 1 ? `${row.subject} (median of ${row.runs})` : row.subject,
    ...withSpread(
      cellsOf(row),
      Number.isFinite(row.spread) ? `${Math.round(row.spread * 100)}%` : "–",
    ),
    row.status,
  ]);
  const widths = header.map((cell, index) =>
    Math.max(cell.length, ...body.map((line) => line[index]!.length))
  );
  const format = (cells: string[]) =>
    "| " + cells.map((cell, index) =>
      index === 0 || index === cells.length - 1
        ? cell.padEnd(widths[index]!)
        : cell.padStart(widths[index]!)
    ).join(" | ") + " |";
  const rule = "|" +
    widths.map((width, index) =>
      index === 0 || index === widths.length - 1
        ? "-".repeat(width + 2)
        : "-".repeat(width + 1) + ":"
    ).join("|") + "|";
  return [
    format(header),
    rule,
    ...body.map(format),
    ...scenario.targets.map((target) =>
      checkTarget(target, bySubject, unitOf(scenario, target.key), { quick })
    ),
  ];
}

function unitOf(scenario: Scenario, key: string): Unit {
  return scenario.columns.find((column) => column.key === key && column.relativeTo === undefined)
    ?.unit ??
    "number";
}

/**
 * One line: whether a target was met, with the measurement and the bound; in
 * a quick run, the measurement and the bound only.
 */
export function checkTarget(
  target: Target,
  bySubject: Map<string, Row>,
  unit: Unit,
  { quick }: RenderOptions,
): string {
  const value = bySubject.get(target.subject)?.metrics[target.key];
  const bound = target.atLeast ?? target.atMost;
  const threshold = bound === undefined ? NaN : resolve(bound, target.key, bySubject);
  const label = `${target.subject} ${target.label}`;
  if (value === undefined || !Number.isFinite(value) || !Number.isFinite(threshold)) {
    return `  n/a   ${label} (not measured in this run)`;
  }
  const comparison = target.atLeast !== undefined ? "≥" : "≤";
  const needs = `${comparison} ${formatValue(threshold, unit)}`;
  if (quick) {
    return `  ~     ${label}: ${formatValue(value, unit)} (indicative; the target, ${needs}, ` +
      "is checked only without --quick)";
  }
  const met = target.atLeast !== undefined ? value >= threshold : value <= threshold;
  const ratio = threshold !== 0 ? ` (${formatValue(value / threshold, "ratio")} of the bound)` : "";
  return `  ${met ? "MET " : "MISS"}  ${label}: ${
    formatValue(value, unit)
  }, needs ${needs}${ratio}`;
}

function resolve(threshold: Threshold, key: string, bySubject: Map<string, Row>): number {
  if (typeof threshold === "number") return threshold;
  const reference = bySubject.get(threshold.subject)?.metrics[key];
  return reference === undefined ? NaN : reference * threshold.factor;
}
