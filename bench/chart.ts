/**
 * The bench as a picture: one SVG (plain text, no browser, no library) with
 * the cold chats' latency distribution under a hot chat (the hotkey
 * scenario, this module against `@grammyjs/runner` and `bot.start()`) and
 * the throughput of each subject per scenario (noop, io), side by side.
 * `deno task bench` writes it from the results it collected; run this file
 * to draw it again from a results file.
 *
 * ```sh
 * deno run --allow-read --allow-write bench/chart.ts bench/results/latest.json bench/chart.svg
 * ```
 *
 * @module
 */

import { COLD_PERCENTILES } from "./_scenario.ts";

/** What the chart needs of a scenario's results (the `scenarios` of `latest.json`). */
export interface ChartScenario {
  name: string;
  rows: ReadonlyArray<{ subject: string; metrics: Record<string, number> }>;
}

/** What the chart says about the run. */
export interface ChartRun {
  /** ISO date of the run. */
  startedAt: string;
  /** The command line, for the caption. */
  command: string;
  /** Deno version, cores, throughput runs. */
  deno: string;
  cores: number;
  runs: number;
  quick: boolean;
  /** The 1-minute load average at the start and the end of the run, if known. */
  load?: [number, number];
}

const WIDTH = 920;
const FONT = "Helvetica, Arial, sans-serif";
const INK = "#1f2937";
const MUTED = "#6b7280";
const GRID = "#e5e7eb";

/** How each subject is drawn, in the order of the legend. */
const SUBJECTS: ReadonlyArray<{ subject: string; label: string; color: string }> = [
  { subject: "grammyx", label: "@grammyx/runner", color: "#2563eb" },
  { subject: "rival", label: "@grammyjs/runner 2.0.3", color: "#dc2626" },
  { subject: "botstart", label: "grammY bot.start()", color: "#9ca3af" },
  { subject: "limit", label: "limit (no runner)", color: "#4b5563" },
];

/** The throughput panels: scenario, title, and the bound to mark, if any. */
const THROUGHPUT: ReadonlyArray<{ scenario: string; title: string; bound?: number }> = [
  { scenario: "noop", title: "noop: empty handler, concurrency 500" },
  { scenario: "io", title: "io: handler awaits 20 ms, concurrency 500", bound: 25_000 },
];

/**
 * Draws the chart.
 *
 * @param scenarios The results of the scenarios that ran (any subset)
 * @param run What the caption says about the run
 * @returns The SVG document
 */
export function renderChart(scenarios: readonly ChartScenario[], run: ChartRun): string {
  const byName = new Map(scenarios.map((scenario) => [scenario.name, scenario]));
  const parts: string[] = [];
  let y = 0;
  parts.push(
    text(24, 34, "Where the runners differ, measured", { size: 20, weight: "bold" }),
    text(
      24,
      54,
      `${run.command} · ${run.startedAt.slice(0, 10)} · Deno ${run.deno}, ${run.cores} cores` +
        (run.load === undefined
          ? ""
          : ` · load average ${run.load.map((value) => value.toFixed(1)).join(" → ")}`) +
        (run.quick ? " · --quick: indicative figures" : ""),
      { size: 12, fill: MUTED },
    ),
  );
  y = 74;
  parts.push(...legend(24, y));
  y += 30;
  const latency = latencyPanel(byName.get("hotkey"), 24, y, WIDTH - 48, 320);
  parts.push(...latency);
  y += 320 + 36;
  const panelWidth = (WIDTH - 48 - 32) / 2;
  THROUGHPUT.forEach((panel, index) => {
    parts.push(
      ...throughputPanel(
        byName.get(panel.scenario),
        panel,
        24 + index * (panelWidth + 32),
        y,
        panelWidth,
      ),
    );
  });
  y += 170;
  parts.push(
    text(
      24,
      y + 14,
      "Latency: from when the fake Bot API queued an update to the end of its handler. Throughput: medians of the runs, each panel on its own scale.",
      { size: 11, fill: MUTED },
    ),
  );
  const height = y + 30;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="${FONT}">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}

function legend(x: number, y: number): string[] {
  const parts: string[] = [];
  let at = x;
  for (const { label, color } of SUBJECTS) {
    parts.push(`<rect x="${at}" y="${y}" width="14" height="14" rx="2" fill="${color}"/>`);
    parts.push(text(at + 20, y + 12, label, { size: 13 }));
    // Wide enough for the widest common sans-serif fonts (DejaVu Sans).
    at += 36 + label.length * 8;
  }
  return parts;
}

/** Cold chats' latency by percentile, log scale, one line per subject. */
function latencyPanel(
  scenario: ChartScenario | undefined,
  x: number,
  y: number,
  width: number,
  height: number,
): string[] {
  const parts = [
    text(x, y + 14, "Cold chats' latency while one hot chat floods the bot", {
      size: 15,
      weight: "bold",
    }),
    text(
      x,
      y + 32,
      "hotkey: 2 000 updates, half of them from one chat (20 ms each), the rest from distinct chats (5 ms); sequentialize(), concurrency 100",
      { size: 12, fill: MUTED },
    ),
  ];
  const top = y + 50;
  const left = x + 64;
  const plotWidth = width - 64 - 120;
  const plotHeight = height - 50 - 36;
  const lines = SUBJECTS.map((style) => ({
    style,
    points: COLD_PERCENTILES.map(({ key, label }) => ({
      label,
      value: scenario?.rows.find((row) => row.subject === style.subject)?.metrics[key],
    })).filter((point): point is { label: string; value: number } =>
      point.value !== undefined && Number.isFinite(point.value) && point.value > 0
    ),
  })).filter((line) => line.points.length > 0);
  if (lines.length === 0) {
    parts.push(
      text(left, top + plotHeight / 2, "(the hotkey scenario was not run)", { fill: MUTED }),
    );
    return parts;
  }
  const values = lines.flatMap((line) => line.points.map((point) => point.value));
  const low = 10 ** Math.floor(Math.log10(Math.min(...values)));
  const high = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  const yOf = (value: number) =>
    top + plotHeight - (Math.log10(value / low) / Math.log10(high / low)) * plotHeight;
  const columns = COLD_PERCENTILES.length;
  const xOf = (index: number) => left + (index / (columns - 1)) * plotWidth;
  for (let tick = low; tick <= high; tick *= 10) {
    const ty = yOf(tick);
    parts.push(line(left, ty, left + plotWidth, ty, GRID));
    parts.push(text(left - 8, ty + 4, formatMs(tick), { size: 12, fill: MUTED, anchor: "end" }));
  }
  COLD_PERCENTILES.forEach(({ label }, index) => {
    parts.push(line(xOf(index), top, xOf(index), top + plotHeight, GRID));
    parts.push(
      text(xOf(index), top + plotHeight + 18, label, { size: 12, fill: MUTED, anchor: "middle" }),
    );
  });
  parts.push(
    text(left + plotWidth / 2, top + plotHeight + 34, "percentile of the cold chats' updates", {
      size: 12,
      fill: MUTED,
      anchor: "middle",
    }),
  );
  const labels: { y: number; text: string; color: string }[] = [];
  for (const { style, points } of lines) {
    const coordinates = points.map((point) => {
      const index = COLD_PERCENTILES.findIndex((entry) => entry.label === point.label);
      return [xOf(index), yOf(point.value)] as const;
    });
    parts.push(
      `<polyline fill="none" stroke="${style.color}" stroke-width="3" stroke-linejoin="round" points="${
        coordinates.map(([px, py]) => `${round(px)},${round(py)}`).join(" ")
      }"/>`,
    );
    for (const [px, py] of coordinates) {
      parts.push(
        `<circle cx="${round(px)}" cy="${
          round(py)
        }" r="3.5" fill="#ffffff" stroke="${style.color}" stroke-width="2"/>`,
      );
    }
    const p99 = points.find((point) => point.label === "p99");
    const last = coordinates.at(-1)!;
    labels.push({
      y: last[1],
      text: `p99 ${p99 === undefined ? "–" : formatMs(p99.value)}`,
      color: style.color,
    });
  }
  // End labels, nudged apart so that they never overlap.
  labels.sort((a, b) => a.y - b.y);
  for (let index = 1; index < labels.length; index++) {
    labels[index]!.y = Math.max(labels[index]!.y, labels[index - 1]!.y + 16);
  }
  for (const label of labels) {
    parts.push(
      text(left + plotWidth + 12, label.y + 4, label.text, {
        size: 12,
        fill: label.color,
        weight: "bold",
      }),
    );
  }
  return parts;
}

/** One scenario's rate per subject, as horizontal bars. */
function throughputPanel(
  scenario: ChartScenario | undefined,
  panel: (typeof THROUGHPUT)[number],
  x: number,
  y: number,
  width: number,
): string[] {
  const parts = [text(x, y + 14, panel.title, { size: 14, weight: "bold" })];
  const rows = SUBJECTS.map((style) => ({
    style,
    rate: scenario?.rows.find((row) => row.subject === style.subject)?.metrics.rate,
  })).filter((row): row is { style: (typeof SUBJECTS)[number]; rate: number } =>
    row.rate !== undefined && Number.isFinite(row.rate)
  );
  if (rows.length === 0) {
    parts.push(text(x, y + 50, `(the ${panel.scenario} scenario was not run)`, { fill: MUTED }));
    return parts;
  }
  const labelWidth = 150;
  const valueWidth = 70;
  const barLeft = x + labelWidth;
  const barWidth = width - labelWidth - valueWidth;
  const max = Math.max(...rows.map((row) => row.rate), panel.bound ?? 0) * 1.05;
  const top = y + 28;
  const rowHeight = 28;
  const bottom = top + rows.length * rowHeight;
  parts.push(line(barLeft, top, barLeft, bottom, MUTED));
  if (panel.bound !== undefined) {
    // Behind the bars and their figures, which stay readable across it.
    const bx = barLeft + (panel.bound / max) * barWidth;
    parts.push(
      `<line x1="${round(bx)}" y1="${top - 4}" x2="${
        round(bx)
      }" y2="${bottom}" stroke="${MUTED}" stroke-width="1.5" stroke-dasharray="4 3"/>`,
    );
    parts.push(
      text(bx, bottom + 14, `bound ${formatRate(panel.bound)}/s`, {
        size: 11,
        fill: MUTED,
        anchor: "middle",
      }),
    );
  }
  rows.forEach(({ style, rate }, index) => {
    const ry = top + index * rowHeight;
    const length = (rate / max) * barWidth;
    parts.push(text(barLeft - 8, ry + 15, style.label, { size: 12, anchor: "end" }));
    parts.push(
      `<rect x="${barLeft}" y="${ry + 3}" width="${round(length)}" height="${
        rowHeight - 10
      }" rx="2" fill="${style.color}"/>`,
    );
    const figure = `${formatRate(rate)}/s`;
    // A white halo keeps the figure readable where it crosses the bound's line.
    parts.push(
      `<text x="${round(barLeft + length + 6)}" y="${
        ry + 15
      }" font-size="12" fill="#ffffff" stroke="#ffffff" stroke-width="4">${figure}</text>`,
      text(barLeft + length + 6, ry + 15, figure, { size: 12, fill: INK }),
    );
  });
  return parts;
}

function text(
  x: number,
  y: number,
  content: string,
  { size = 13, fill = INK, weight = "normal", anchor = "start" }: {
    size?: number;
    fill?: string;
    weight?: string;
    anchor?: "start" | "middle" | "end";
  } = {},
): string {
  return `<text x="${round(x)}" y="${round(y)}" font-size="${size}" fill="${fill}"${
    weight === "normal" ? "" : ` font-weight="${weight}"`
  }${anchor === "start" ? "" : ` text-anchor="${anchor}"`}>${escape(content)}</text>`;
}

function line(x1: number, y1: number, x2: number, y2: number, stroke: string): string {
  return `<line x1="${round(x1)}" y1="${round(y1)}" x2="${round(x2)}" y2="${
    round(y2)
  }" stroke="${stroke}" stroke-width="1"/>`;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function escape(content: string): string {
  return content.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** 3 ms, 250 ms, 1.2 s, 18 s. */
export function formatMs(ms: number): string {
  if (ms < 1_000) return `${Number(ms.toPrecision(3))} ms`;
  return `${Number((ms / 1000).toPrecision(3))} s`;
}

/** 75 472 → "75 500"; 913 → "913". */
function formatRate(rate: number): string {
  const rounded = rate >= 10_000 ? Math.round(rate / 100) * 100 : Math.round(rate);
  return rounded.toLocaleString("en-US").replace(/,/g, " ");
}

if (import.meta.main) {
  const [input = "bench/results/latest.json", output = "bench/chart.svg"] = Deno.args;
  const results = JSON.parse(await Deno.readTextFile(input));
  const svg = renderChart(results.scenarios, {
    startedAt: results.startedAt,
    command: ["deno task bench", ...(results.args ?? [])].join(" "),
    deno: results.machine?.deno?.deno ?? "?",
    cores: results.machine?.cores ?? 0,
    runs: results.runs ?? 1,
    quick: results.quick === true,
    ...(results.machine?.loadAverageAtEnd === undefined ? {} : {
      load: [results.machine.loadAverageAtStart[0], results.machine.loadAverageAtEnd[0]],
    }),
  });
  await Deno.writeTextFile(output, svg);
  console.log(`Wrote ${output}`);
}
