// What the sinks promise their callers: the consumer they run updates
// through, the outcomes, the counters, and the `UpdateSink` the runner
// drives. The implementation modules below sink.ts fulfil these; sink.ts
// re-exports them, and its documentation shows them. Not exported by mod.ts.

/** Processes one update; the promise settles when its processing is over. */
export interface UpdateConsumer<Y> {
  /** Processes `update`; rejects if its middleware failed. */
  consume: (update: Y) => Promise<void>;
}

/** How the processing of an update ended. */
export type Outcome = "handled" | "failed" | "timedOut";

/**
 * Takes batches of updates from the runner and processes them. `handle`
 * resolves with how many more updates the sink is ready to take (a positive
 * number) once it has room again: that is the backpressure that sets how many
 * updates the source fetches next.
 */
export interface UpdateSink<Y> {
  /** Takes a batch; resolves with the free capacity once it is positive. */
  handle: (updates: Y[]) => Promise<number>;
  /** Updates taken and not finished (running, waiting, not started). */
  size: () => number;
  /** Those updates, in the order they were taken. */
  snapshot: () => Y[];
  /**
   * The updates whose middleware has not ended, in the order they were
   * taken: those of `snapshot()` and those that timed out and still run.
   * What `stop()` reports as unfinished at its deadline; a sink without it
   * reports `snapshot()`.
   */
  unended?: () => Y[];
  /**
   * Resolves once every update taken has finished and no task of the sink is
   * running any more (tasks that timed out included). The runner awaits it
   * on `stop()`; a sink without it is polled through `size()`.
   */
  idle?: () => Promise<void>;
  /** Counters for `RunnerHandle.stats()`. */
  stats?: () => SinkStats;
  /**
   * Closes what middleware handed to the sink (e.g. the worker pools of
   * `distribute()`). The runner calls it at the end of `stop()`.
   */
  close?: () => Promise<void>;
}

/** A snapshot of what a sink is doing; cheap to take every second. */
export interface SinkStats {
  /** Updates whose middleware completed. */
  handled: number;
  /** Updates whose middleware threw (the error handler got them). */
  failed: number;
  /** Updates that ran out of time (the timeout handler got them). */
  timedOut: number;
  /** Updates holding a concurrency slot right now. */
  running: number;
  /** Updates waiting for their key in `sequentialize()`, holding no slot. */
  waitingForKey: number;
  /** Updates waiting for a slot (new ones and ones whose key came free). */
  waitingForSlot: number;
  /** Updates taken and not finished: running plus waiting. */
  pending: number;
  /** `Date.now()` when the oldest unfinished update was taken, if any. */
  oldestPendingSince: number | undefined;
}

/** The error handler of a sink; the update is passed as second argument. */
export type SinkErrorHandler<R, Y> = (error: R, update: Y) => unknown;
