// What `run()` and `runFrom()` both wire around the sink: the bot's error
// handler with a reporter behind it, timed-out updates that count as done
// only when their task ends, and a stop on an abort signal. Not exported by
// mod.ts.

import { describe, redactError } from "./_redact.ts";
import { type Report, type Reporter, safeReport } from "./_report.ts";
import type { RunnerHandle } from "./runner.ts";

/**
 * The sink's error handler for a bot: passes the error to `bot.errorHandler`
 * (set with `bot.catch`) and reports an error handler that throws.
 */
export function botErrorHandler<R>(
  bot: { errorHandler: (error: R) => unknown; readonly token?: string },
  reporter: Reporter,
): (error: R) => Promise<void> {
  return async (error) => {
    try {
      await bot.errorHandler(error);
    } catch (thrown) {
      const report: Report = {
        source: "errorHandler",
        message: `The bot's error handler threw (set one with bot.catch): ${
          describe(thrown, bot.token)
        }`,
        error: redactError(thrown, bot.token),
      };
      safeReport(reporter, report);
    }
  };
}

/**
 * Wraps a timeout handler so that the update counts as done (`done(update)`)
 * only when its task really ends: a crash before then must not lose it.
 */
export function doneWhenEnded<Y>(
  handler: (update: Y, task: Promise<void>) => void,
  done: (update: Y) => void,
): (update: Y, task: Promise<void>) => void {
  return (update, task) => {
    const end = () => done(update);
    task.then(end, end);
    handler(update, task);
  };
}

/** Throws a `TypeError` unless `signal` is an `AbortSignal` or undefined. */
export function checkSignal(subject: string, signal: unknown): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `${subject} as 'signal' must be an AbortSignal: current value is ${String(signal)}`,
    );
  }
}

/** Stops `handle` when `signal` aborts; forgets the signal once the run ends. */
export function stopOnAbort(
  handle: Pick<RunnerHandle, "stop" | "task">,
  signal: AbortSignal,
): void {
  const onAbort = () => void handle.stop();
  signal.addEventListener("abort", onAbort, { once: true });
  const forget = () => signal.removeEventListener("abort", onAbort);
  handle.task()?.then(forget, forget);
}
