/**
 * Small statistics and number formatting for the bench: percentiles of
 * sorted samples, medians of repeated runs, and compact cells for the table.
 *
 * ```ts
 * import { median, percentile } from "./_stats.ts";
 *
 * percentile([1, 2, 3, 4], 0.5); // 2
 * median([3, 1, 2]); // 2
 * ```
 *
 * @module
 */

/**
 * The nearest-rank percentile of ascending samples.
 *
 * @param sorted Samples in ascending order
 * @param fraction 0..1, e.g. 0.99
 * @returns The sample at that rank, NaN if there are none
 */
export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(fraction * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

/**
 * The median of the finite values, NaN if there are none.
 *
 * @param values Any numbers
 * @returns Their median (the mean of the middle two for an even count)
 */
export function median(values: readonly number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * The median of each key over several records.
 *
 * @param records Metrics of repeated runs
 * @returns One record with the median per key
 */
export function medianOf(records: ReadonlyArray<Record<string, number>>): Record<string, number> {
  const keys = new Set(records.flatMap((record) => Object.keys(record)));
  return Object.fromEntries(
    [...keys].map((key) => [key, median(records.map((record) => record[key] ?? NaN))]),
  );
}

/** How a table cell shows a number. */
export type Unit = "count" | "rate" | "us" | "ms" | "s" | "mb" | "ratio" | "number";

/**
 * Formats a number for a table cell.
 *
 * @param value The number (NaN or undefined shows as "–")
 * @param unit How to show it
 * @returns A short string
 */
export function formatValue(value: number | undefined, unit: Unit): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  switch (unit) {
    case "count":
      return Math.round(value).toLocaleString("en-US");
    case "rate":
      return `${Math.round(value).toLocaleString("en-US")}/s`;
    case "us":
      return `${value.toFixed(1)} µs`;
    case "ms":
      return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
    case "s":
      return `${(value / 1000).toFixed(2)} s`;
    case "mb":
      return `${value.toFixed(1)} MB`;
    case "ratio":
      return `${value.toFixed(2)}×`;
    case "number":
      return Math.abs(value) >= 1000 ? Math.round(value).toLocaleString("en-US") : value.toFixed(1);
  }
}
