// The one place where the module may print: the default reporter.

/** Something the runner could not hand to the bot and wants a human to know. */
export interface Report {
  /** Where it happened. */
  source:
    | "getUpdates"
    | "journal"
    | "queue"
    | "webhook"
    | "errorHandler"
    | "timeoutHandler"
    | "onSettled"
    | "lateFailure"
    | "consumer"
    | "stop";
  /** One line, sentence case, without the bot token. */
  message: string;
  /** The error, if any: a copy with bot tokens removed from its message, stack and causes. */
  error?: unknown;
}

/** Receives reports; replaces the default one-line-per-report output on stderr. */
export type Reporter = (report: Report) => void;

/** Prints one concise line per report on stderr. */
export function defaultReporter(report: Report): void {
  console.error(`[grammyx/runner] ${report.message}`);
}

/** Calls `reporter`, falling back to the default one if it throws. */
export function safeReport<R extends Report>(reporter: (report: R) => void, report: R): void {
  try {
    reporter(report);
  } catch {
    defaultReporter(report);
  }
}
