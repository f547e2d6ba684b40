/**
 * The subjects: runners the bench can put a bot under. Each entry loads its
 * driver lazily, so a subject process loads only the runner it measures.
 * Add a row (for example a confirm mode or a journal) with a name, a line of
 * description and a loader.
 *
 * ```ts
 * import { SUBJECTS } from "./_subjects.ts";
 *
 * const driver = await SUBJECTS.grammyx.load();
 * ```
 *
 * @module
 */

import type { Driver } from "./subjects/_driver.ts";

/** One runner under test. */
export interface Subject {
  /** One line for `--help` and the JSON file. */
  summary: string;
  /** Imports the driver (only in the subject process). */
  load: () => Promise<Driver>;
  /** A variant runs in every scenario its base subject runs in. */
  variantOf?: string;
}

/** Every subject, by the name used with `--subjects`. */
export const SUBJECTS = {
  grammyx: {
    summary: "this module: run() + sequentialize() from @grammyx/runner (the workspace root)",
    load: async () => (await import("./subjects/grammyx.ts")).grammyx(),
  },
  rival: {
    summary: "npm:@grammyjs/runner@2.0.3, same options",
    load: async () => (await import("./subjects/rival.ts")).rival(),
  },
  botstart: {
    summary: "grammY's bot.start(): one update after another",
    load: async () => (await import("./subjects/botstart.ts")).botstart(),
  },
  limit: {
    summary: "getUpdates loop + unbounded Promise.all (upper bound)",
    load: async () => (await import("./subjects/limit.ts")).limit(),
  },
  "grammyx-handled": {
    summary: 'grammyx with runner.confirm = "handled" (crash-safe offset)',
    load: async () => (await import("./subjects/grammyx.ts")).grammyx({ confirm: "handled" }),
    variantOf: "grammyx",
  },
  "grammyx-journal": {
    summary: "grammyx with runner.journal = kvJournal(a local Deno KV file)",
    load: async () => (await import("./subjects/grammyx.ts")).grammyxJournal(),
    variantOf: "grammyx",
  },
  "grammyx-otel": {
    summary:
      "grammyx with OpenTelemetry's SDK recording every metric and span (in-memory exporters)",
    load: async () => (await import("./subjects/grammyx.ts")).grammyxOtel(true),
    variantOf: "grammyx",
  },
  "grammyx-otel-metrics": {
    summary: "grammyx with OpenTelemetry's SDK recording every metric, no spans",
    load: async () => (await import("./subjects/grammyx.ts")).grammyxOtel(false),
    variantOf: "grammyx",
  },
  "grammyx-distribute": {
    summary: "grammyx with distribute(count 2) over worker threads (cpu scenario only)",
    load: () =>
      Promise.reject(new Error("grammyx-distribute runs only in the cpu scenario (bench/cpu.ts)")),
  },
} satisfies Record<string, Subject>;

/** A subject's name. */
export type SubjectName = keyof typeof SUBJECTS;

/**
 * Tells whether a subject runs in a scenario: it is listed there, or it is
 * a variant of a subject listed there.
 *
 * @param name The subject
 * @param listed The scenario's subjects
 * @returns Whether it runs
 */
export function runsIn(name: SubjectName, listed: readonly string[]): boolean {
  const variantOf: string | undefined = (SUBJECTS[name] as Subject).variantOf;
  return listed.includes(name) || (variantOf !== undefined && listed.includes(variantOf));
}

/**
 * Tells whether `name` is a subject.
 *
 * @param name A name from the command line
 * @returns Whether it names a subject
 */
export function isSubjectName(name: string): name is SubjectName {
  return Object.hasOwn(SUBJECTS, name);
}
