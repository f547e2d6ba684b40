/**
 * The update sink: runs each update through a consumer (usually
 * `bot.handleUpdate`) with at most `concurrency` running at once, times them
 * out, routes their errors, and tells the runner how many more updates it can
 * take (backpressure). An update that waits for its key in `sequentialize()`
 * gives its slot back meanwhile, so one busy chat cannot starve the others.
 *
 * ```ts
 * import { createConcurrentSink } from "@grammyx/runner/sink";
 *
 * const sink = createConcurrentSink(
 *   { consume: async (update: { update_id: number }) => {} },
 *   async (error) => console.error(error),
 *   { concurrency: 100 },
 * );
 * await sink.handle([{ update_id: 1 }]);
 * ```
 *
 * @module
 */

import { Queue } from "./_async.ts";
import { defaultReporter, type Report, type Reporter, safeReport } from "./_report.ts";
import { type Closable, registerSlot, type Slot, unregisterSlot } from "./_slots.ts";
import { describe, redactError } from "./_redact.ts";
import { isFunction, numberInRange, optionalObject, positiveInteger } from "./_validate.ts";

export type { Report, Reporter };

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

/** Options of the sinks. */
export interface SinkOptions<Y> {
  /**
   * How many updates may run at once. Updates waiting for their key in
   * `sequentialize()` do not count.
   *
   * @default {500}
   */
  concurrency?: number;
  /**
   * How many updates the sink may hold that were taken and not finished
   * (running, waiting for a slot or for their key). When it is reached,
   * fetching waits. Must be at least `concurrency`.
   *
   * @default {Math.max(10_000, concurrency)}
   */
  maxPending?: number;
  /**
   * Bounds how long an update may hold a slot. The clock starts when it
   * takes a slot, and starts again when it takes one back after waiting for
   * its key. A timed-out update frees its slot and its keys stay held until
   * its task really ends.
   *
   * @default {undefined} (no timeout)
   */
  timeout?: {
    /** The time limit in milliseconds. */
    milliseconds: number;
    /** Called with the update and its still-running task. Must not throw. */
    handler: (update: Y, task: Promise<void>) => void;
  };
  /** Called once per update when it is handled, failed or timed out. */
  onSettled?: (update: Y, outcome: Outcome) => void;
  /**
   * Receives what could not be handed to the bot: an error handler that
   * threw, a failure after a timeout.
   *
   * @default {defaultReporter} (one line on stderr)
   */
  reporter?: Reporter;
}

/** The error handler of a sink; the update is passed as second argument. */
export type SinkErrorHandler<R, Y> = (error: R, update: Y) => unknown;

/**
 * Creates the sink `run()` uses: updates run concurrently, at most
 * `concurrency` at once, and `handle` resolves as soon as a slot is free.
 *
 * @param consumer Processes an update, e.g. `{ consume: (u) => bot.handleUpdate(u) }`
 * @param errorHandler Gets the error (and the update) when `consume` rejects
 * @param options Concurrency, buffer bound, timeout, callbacks
 * @returns An update sink
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createConcurrentSink } from "@grammyx/runner";
 *
 * let running = 0, peak = 0;
 * const sink = createConcurrentSink(
 *   {
 *     consume: async () => {
 *       peak = Math.max(peak, ++running);
 *       await new Promise((ok) => setTimeout(ok, 1));
 *       running--;
 *     },
 *   },
 *   async () => {},
 *   { concurrency: 2 },
 * );
 * await sink.handle([{ update_id: 1 }, { update_id: 2 }, { update_id: 3 }]);
 * await sink.idle?.();
 * assert.equal(peak, 2);
 * ```
 */
export function createConcurrentSink<Y, R = unknown>(
  consumer: UpdateConsumer<Y>,
  errorHandler: SinkErrorHandler<R, Y>,
  options: SinkOptions<Y> = {},
): UpdateSink<Y> {
  const core = new SinkCore(consumer, errorHandler, options, "concurrent");
  return {
    handle: (updates) => {
      core.add(updates);
      return core.capacity();
    },
    size: () => core.size(),
    snapshot: () => core.snapshot(),
    idle: () => core.idle(),
    stats: () => core.stats(),
    close: () => core.close(),
  };
}

/**
 * Creates a sink that handles one update after another, like grammY's
 * `bot.start()`: predictable, good for debugging, slow for a busy bot.
 *
 * @param consumer Processes an update
 * @param errorHandler Gets the error (and the update) when `consume` rejects
 * @param options Timeout and callbacks (`concurrency` is always 1)
 * @returns An update sink whose `handle` resolves when the batch is done
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSequentialSink } from "@grammyx/runner";
 *
 * const seen: number[] = [];
 * const sink = createSequentialSink(
 *   { consume: async (u: { update_id: number }) => void seen.push(u.update_id) },
 *   async () => {},
 * );
 * await sink.handle([{ update_id: 1 }, { update_id: 2 }]);
 * assert.deepEqual(seen, [1, 2]);
 * ```
 */
export function createSequentialSink<Y, R = unknown>(
  consumer: UpdateConsumer<Y>,
  errorHandler: SinkErrorHandler<R, Y>,
  options: SinkOptions<Y> = {},
): UpdateSink<Y> {
  return batchWise(new SinkCore(consumer, errorHandler, options, "sequential"));
}

/**
 * Creates a sink that runs all updates of a batch at once and takes the next
 * batch only when the whole batch is done (telegraf's old behaviour).
 *
 * @param consumer Processes an update
 * @param errorHandler Gets the error (and the update) when `consume` rejects
 * @param options Timeout and callbacks (`concurrency` is the batch size)
 * @returns An update sink whose `handle` resolves when the batch is done
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createBatchSink } from "@grammyx/runner";
 *
 * let running = 0, peak = 0;
 * const sink = createBatchSink(
 *   { consume: async () => { peak = Math.max(peak, ++running); await Promise.resolve(); running--; } },
 *   async () => {},
 * );
 * await sink.handle([{ update_id: 1 }, { update_id: 2 }, { update_id: 3 }]);
 * assert.equal(peak, 3);
 * assert.equal(sink.size(), 0);
 * ```
 */
export function createBatchSink<Y, R = unknown>(
  consumer: UpdateConsumer<Y>,
  errorHandler: SinkErrorHandler<R, Y>,
  options: SinkOptions<Y> = {},
): UpdateSink<Y> {
  return batchWise(new SinkCore(consumer, errorHandler, options, "batch"));
}

function batchWise<Y>(core: SinkCore<Y>): UpdateSink<Y> {
  return {
    handle: async (updates) => {
      core.add(updates);
      await core.finished();
      return Infinity;
    },
    size: () => core.size(),
    snapshot: () => core.snapshot(),
    idle: () => core.idle(),
    stats: () => core.stats(),
    close: () => core.close(),
  };
}

type State = "queued" | "running" | "released" | "returning" | "done" | "timedOut";

/** An update in the sink. It is also the slot `sequentialize()` finds through the update. */
class Task<Y> implements Slot {
  state: State = "queued";
  promise: Promise<void> | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  resume: (() => void) | undefined;

  constructor(
    readonly core: SinkCore<Y>,
    readonly update: Y,
    readonly takenAt: number,
  ) {}

  release(): void {
    this.core.releaseForKey(this);
  }

  acquire(): Promise<void> {
    return this.core.acquireAfterKey(this);
  }

  adopt(resource: Closable): void {
    this.core.adopt(resource);
  }
}

const SUBJECT = "Cannot create sink";

/** How many updates a batch holds at most (getUpdates' limit). */
const BATCH = 100;

/** The permits, queues and bookkeeping behind every sink of this module. */
class SinkCore<Y> {
  readonly #consumer: UpdateConsumer<Y>;
  readonly #errorHandler: SinkErrorHandler<unknown, Y>;
  readonly #maxPending: number;
  /** Updates that may wait for a slot, so slots never idle while a fetch is on its way. */
  readonly #ahead: number;
  /** While every slot is busy, ask for more only when this many fit (whole batches). */
  readonly #topUp: number;
  readonly #timeout: SinkOptions<Y>["timeout"];
  readonly #onSettled: SinkOptions<Y>["onSettled"];
  readonly #reporter: Reporter;

  #free: number;
  readonly #queued = new Queue<Task<Y>>();
  readonly #returning = new Queue<Task<Y>>();
  readonly #pending = new Set<Task<Y>>();
  #running = 0;
  #waitingForKey = 0;
  #returningCount = 0;
  #tasks = 0;
  #handled = 0;
  #failed = 0;
  #timedOut = 0;
  #capacityWaiters: ((capacity: number) => void)[] = [];
  #finishedWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];
  readonly #adopted = new Set<Closable>();

  constructor(
    consumer: UpdateConsumer<Y>,
    errorHandler: SinkErrorHandler<never, Y>,
    options: SinkOptions<Y>,
    kind: "concurrent" | "sequential" | "batch",
  ) {
    if (typeof consumer !== "object" || consumer === null) {
      throw new TypeError(`${SUBJECT} as 'consumer' must be an object with a consume function`);
    }
    isFunction(SUBJECT, "consumer.consume", consumer.consume);
    isFunction(SUBJECT, "errorHandler", errorHandler);
    optionalObject(SUBJECT, "options", options);
    const {
      concurrency = 500,
      maxPending = Math.max(10_000, concurrency),
      timeout,
      onSettled,
      reporter = defaultReporter,
    } = options;
    if (kind === "concurrent") {
      positiveInteger(SUBJECT, "concurrency", concurrency);
      positiveInteger(SUBJECT, "maxPending", maxPending);
      if (maxPending < concurrency) {
        throw new RangeError(
          `${SUBJECT} as 'maxPending' must be at least 'concurrency' (${concurrency}): current value is ${maxPending}`,
        );
      }
    }
    if (timeout !== undefined) {
      optionalObject(SUBJECT, "timeout", timeout);
      numberInRange(SUBJECT, "timeout.milliseconds", timeout.milliseconds, 1);
      isFunction(SUBJECT, "timeout.handler", timeout.handler);
    }
    if (onSettled !== undefined) isFunction(SUBJECT, "onSettled", onSettled);
    isFunction(SUBJECT, "reporter", reporter);

    this.#consumer = consumer;
    this.#errorHandler = errorHandler as SinkErrorHandler<unknown, Y>;
    this.#free = kind === "concurrent" ? concurrency : kind === "sequential" ? 1 : Infinity;
    this.#maxPending = kind === "concurrent" ? maxPending : Infinity;
    this.#ahead = kind === "concurrent" ? Math.min(2 * BATCH, concurrency) : 0;
    this.#topUp = Math.max(1, Math.min(BATCH, Math.floor(this.#ahead / 2)));
    this.#timeout = timeout;
    this.#onSettled = onSettled;
    this.#reporter = reporter;
  }

  /** Takes the updates: each starts at once if a slot is free, else waits for one. */
  add(updates: Y[]): void {
    const now = Date.now();
    for (const update of updates) {
      const task = new Task(this, update, now);
      this.#pending.add(task);
      if (this.#free > 0) {
        this.#free--;
        this.#start(task);
      } else {
        this.#queued.push(task);
      }
    }
  }

  /** Resolves with the free capacity once there is room for more (see `#hasRoom`). */
  capacity(): Promise<number> {
    if (this.#hasRoom()) return Promise.resolve(this.#capacity());
    return new Promise((resolve) => this.#capacityWaiters.push(resolve));
  }

  size(): number {
    return this.#pending.size;
  }

  snapshot(): Y[] {
    return Array.from(this.#pending, (task) => task.update);
  }

  /** Resolves once every update taken has settled. */
  finished(): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#finishedWaiters.push(resolve));
  }

  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  adopt(resource: Closable): void {
    this.#adopted.add(resource);
  }

  /** Closes every resource middleware handed over, reporting failures. */
  async close(): Promise<void> {
    const resources = [...this.#adopted];
    this.#adopted.clear();
    const results = await Promise.allSettled(resources.map((resource) => resource.close()));
    for (const result of results) {
      if (result.status === "rejected") {
        safeReport(this.#reporter, {
          source: "stop",
          message: `A resource could not be closed: ${describe(result.reason)}`,
          error: redactError(result.reason),
        });
      }
    }
  }

  stats(): SinkStats {
    const oldest = this.#pending.values().next();
    return {
      handled: this.#handled,
      failed: this.#failed,
      timedOut: this.#timedOut,
      running: this.#running,
      waitingForKey: this.#waitingForKey,
      waitingForSlot: this.#queued.length + this.#returningCount,
      pending: this.#pending.size,
      oldestPendingSince: oldest.done ? undefined : oldest.value.takenAt,
    };
  }

  /**
   * How many more updates the sink takes: free slots plus a small read-ahead
   * (at most two batches waiting for a slot), within `maxPending`.
   */
  #capacity(): number {
    const waiting = this.#queued.length + this.#returningCount;
    return Math.min(this.#free + this.#ahead - waiting, this.#maxPending - this.#pending.size);
  }

  /** Idle slots take what fits; busy ones wait until a whole batch fits the read-ahead. */
  #hasRoom(): boolean {
    const capacity = this.#capacity();
    return capacity > 0 && (this.#free > 0 || capacity >= this.#topUp);
  }

  #isIdle(): boolean {
    return this.#tasks === 0 && this.#pending.size === 0;
  }

  #start(task: Task<Y>): void {
    task.state = "running";
    this.#running++;
    this.#tasks++;
    registerSlot(task.update, task);
    this.#armTimer(task);
    let promise: Promise<void>;
    try {
      promise = Promise.resolve(this.#consumer.consume(task.update));
    } catch (error) {
      promise = Promise.reject(error);
    }
    task.promise = promise;
    promise.then(
      () => this.#settle(task, "handled"),
      (error) => this.#fail(task, error),
    );
  }

  async #fail(task: Task<Y>, error: unknown): Promise<void> {
    // The error handler's time belongs to the update, but it is not timed out.
    clearTimeout(task.timer);
    if (task.state === "timedOut") {
      safeReport(this.#reporter, {
        source: "lateFailure",
        message: `An update failed after it had timed out: ${describe(error)}`,
        error: redactError(error),
      });
    } else {
      try {
        await this.#errorHandler(error, task.update);
      } catch (thrown) {
        safeReport(this.#reporter, {
          source: "errorHandler",
          message: `The error handler threw (set one with bot.catch): ${describe(thrown)}`,
          error: redactError(thrown),
        });
      }
    }
    this.#settle(task, "failed");
  }

  #settle(task: Task<Y>, outcome: Outcome): void {
    this.#tasks--;
    if (task.state !== "timedOut") {
      this.#finish(task);
      if (outcome === "handled") this.#handled++;
      else this.#failed++;
      this.#notifySettled(task.update, outcome);
    }
    this.#wake();
  }

  #timeOut(task: Task<Y>): void {
    if (task.state !== "running") return;
    this.#finish(task);
    task.state = "timedOut";
    this.#timedOut++;
    try {
      this.#timeout?.handler(task.update, task.promise as Promise<void>);
    } catch (error) {
      safeReport(this.#reporter, {
        source: "timeoutHandler",
        message: `The timeout handler threw: ${describe(error)}`,
        error: redactError(error),
      });
    }
    this.#notifySettled(task.update, "timedOut");
    this.#wake();
  }

  /** Takes a task out of the books and frees what it held. */
  #finish(task: Task<Y>): void {
    clearTimeout(task.timer);
    const state = task.state;
    task.state = "done";
    this.#pending.delete(task);
    unregisterSlot(task.update);
    if (state === "running") {
      this.#running--;
      this.#releasePermit();
    } else if (state === "released") {
      this.#waitingForKey--;
    } else if (state === "returning") {
      // The update ended while its `sequentialize()` chain still waited for
      // a slot (a middleware before it did not await next()): let the chain
      // go on without one rather than hold its key forever.
      this.#returningCount--;
      task.resume?.();
      safeReport(this.#reporter, {
        source: "consumer",
        message:
          "An update finished while sequentialize() still waited for its turn; does a middleware before it forget to await next()?",
      });
    }
  }

  #notifySettled(update: Y, outcome: Outcome): void {
    if (this.#onSettled === undefined) return;
    try {
      this.#onSettled(update, outcome);
    } catch (error) {
      safeReport(this.#reporter, {
        source: "onSettled",
        message: `The onSettled callback threw: ${describe(error)}`,
        error: redactError(error),
      });
    }
  }

  /** Hands a free permit on: first to updates whose key came free, then to new ones. */
  #releasePermit(): void {
    for (let task = this.#returning.shift(); task !== undefined; task = this.#returning.shift()) {
      if (task.state !== "returning") continue;
      this.#returningCount--;
      task.state = "running";
      this.#running++;
      this.#armTimer(task);
      task.resume?.();
      return;
    }
    const next = this.#queued.shift();
    if (next !== undefined) this.#start(next);
    else this.#free++;
  }

  /** `sequentialize()`: the update waits for its key and gives its slot back meanwhile. */
  releaseForKey(task: Task<Y>): void {
    if (task.state !== "running") return;
    clearTimeout(task.timer);
    task.state = "released";
    this.#running--;
    this.#waitingForKey++;
    this.#releasePermit();
    this.#wake();
  }

  /** `sequentialize()`: the key is free; take a slot, ahead of updates not started yet. */
  acquireAfterKey(task: Task<Y>): Promise<void> {
    if (task.state !== "released") return Promise.resolve();
    this.#waitingForKey--;
    if (this.#free > 0) {
      this.#free--;
      task.state = "running";
      this.#running++;
      this.#armTimer(task);
      return Promise.resolve();
    }
    task.state = "returning";
    this.#returningCount++;
    this.#returning.push(task);
    return new Promise((resolve) => (task.resume = resolve));
  }

  #armTimer(task: Task<Y>): void {
    // Longer than setTimeout can count (Infinity included) means no timeout.
    if (this.#timeout === undefined || this.#timeout.milliseconds > 2 ** 31 - 1) return;
    task.timer = setTimeout(() => this.#timeOut(task), this.#timeout.milliseconds);
  }

  /** Resolves whoever waits for capacity, for all updates to settle, or for idleness. */
  #wake(): void {
    if (this.#capacityWaiters.length > 0 && this.#hasRoom()) {
      const capacity = this.#capacity();
      const waiters = this.#capacityWaiters;
      this.#capacityWaiters = [];
      for (const resolve of waiters) resolve(capacity);
    }
    if (this.#pending.size === 0 && this.#finishedWaiters.length > 0) {
      const waiters = this.#finishedWaiters;
      this.#finishedWaiters = [];
      for (const resolve of waiters) resolve();
    }
    if (this.#isIdle() && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
