// The engine behind the sinks of sink.ts: every update taken becomes a task
// that waits for a permit, runs the consumer under its time limit, hands its
// error on, and gets exactly one outcome. Its permits live in _permits.ts,
// its books and backpressure in _backlog.ts. Not exported by mod.ts.

import { Backlog, type TaskState } from "./_backlog.ts";
import { clock, startTimer, stopTimer, type TimerId } from "./_clock.ts";
import { Permits } from "./_permits.ts";
import { describe, redactError } from "./_redact.ts";
import { type Report, type Reporter, safeReport } from "./_report.ts";
import { type Closable, registerSlot, type Slot, unregisterSlot } from "./_slots.ts";
import { SinkTelemetry, type Telemetry, type UpdateTrack } from "./_telemetry.ts";
import type { Outcome, SinkErrorHandler, UpdateConsumer } from "./_sink_contract.ts";

/** The checked options of a sink, defaults applied (see `settingsOf` in sink.ts). */
export interface SinkSettings<Y> {
  consumer: UpdateConsumer<Y>;
  errorHandler: SinkErrorHandler<unknown, Y>;
  /** Updates holding a permit at most (`Infinity`: no bound). */
  concurrency: number;
  /** Updates taken and not finished at most. */
  maxPending: number;
  /** Updates that may wait for a permit (the read-ahead). */
  ahead: number;
  /** `SinkOptions.timeout`. */
  timeout: { milliseconds: number; handler: (update: Y, task: Promise<void>) => void } | undefined;
  /** `SinkOptions.onSettled`. */
  onSettled: ((update: Y, outcome: Outcome) => void) | undefined;
  reporter: Reporter;
  /** Where metrics and spans go; `undefined` when no provider records them. */
  telemetry: Telemetry | undefined;
}

/** An update in the sink. It is also the slot `sequentialize()` finds through the update. */
class Task<Y> implements Slot {
  state: TaskState = "waitingForSlot";
  promise: Promise<void> | undefined;
  timer: TimerId | undefined;
  /** Withdraws its wait for a permit after its key came free. */
  withdraw: (() => void) | undefined;
  /** Lets its `sequentialize()` chain go on after that wait. */
  resume: (() => void) | undefined;
  /** Its span and times, when telemetry records. */
  tracked: UpdateTrack | undefined;

  readonly core: SinkCore<Y>;
  readonly update: Y;
  readonly takenAt: number;

  constructor(core: SinkCore<Y>, update: Y, takenAt: number) {
    this.core = core;
    this.update = update;
    this.takenAt = takenAt;
  }

  release(): void {
    this.core.releaseForKey(this);
  }

  acquire(): Promise<void> {
    return this.core.acquireAfterKey(this);
  }

  adopt(resource: Closable): void {
    this.core.adopt(resource);
  }

  keyed(keys: readonly string[]): void {
    this.tracked?.keyed(keys);
  }
}

/** What the sink reports, by the source of the report. */
const REPORTS = {
  errorHandler: "The error handler threw (set one with bot.catch)",
  timeoutHandler: "The timeout handler threw",
  onSettled: "The onSettled callback threw",
  lateFailure: "An update failed after it had timed out",
  consumer:
    "An update finished while sequentialize() still waited for its turn; does a middleware before it forget to await next()?",
  stop: "A resource could not be closed",
} as const satisfies Partial<Record<Report["source"], string>>;

/** The tasks of a sink, from taken to their outcome. */
export class SinkCore<Y> {
  /** The updates taken and not finished, and the backpressure. */
  readonly backlog: Backlog<Y>;
  readonly #settings: SinkSettings<Y>;
  readonly #permits: Permits;
  readonly #adopted = new Set<Closable>();
  readonly #telemetry: SinkTelemetry | undefined;

  constructor(settings: SinkSettings<Y>) {
    this.#settings = settings;
    this.#permits = new Permits(settings.concurrency);
    this.backlog = new Backlog(this.#permits, settings.ahead, settings.maxPending);
    if (settings.telemetry !== undefined) {
      this.#telemetry = SinkTelemetry.create(settings.telemetry, () => this.backlog.stats());
    }
  }

  /** Takes the updates: each starts at once if a permit is free, else waits for one. */
  add(updates: Y[]): void {
    const now = clock().now();
    const telemetry = this.#telemetry;
    if (telemetry !== undefined && updates.length > 0) telemetry.taken(updates.length);
    for (const update of updates) {
      const task = new Task(this, update, now);
      if (telemetry !== undefined) task.tracked = telemetry.track(update);
      this.backlog.take(task);
      this.#permits.acquire(() => this.#start(task));
    }
  }

  adopt(resource: Closable): void {
    this.#adopted.add(resource);
  }

  /** Closes every resource middleware handed over, reporting failures. */
  async close(): Promise<void> {
    this.#telemetry?.close();
    const resources = [...this.#adopted];
    this.#adopted.clear();
    const results = await Promise.allSettled(resources.map((resource) => resource.close()));
    for (const result of results) {
      if (result.status === "rejected") this.#report("stop", result.reason);
    }
  }

  /** `sequentialize()`: the update waits for its key and gives its permit back meanwhile. */
  releaseForKey(task: Task<Y>): void {
    if (task.state !== "running") return;
    stopTimer(task.timer);
    this.#move(task, "waitingForKey");
    this.#permits.release();
    this.backlog.wake();
  }

  /** `sequentialize()`: the key is free; take a permit, ahead of updates not started yet. */
  acquireAfterKey(task: Task<Y>): Promise<void> {
    if (task.state !== "waitingForKey") return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    task.resume = resolve;
    this.#move(task, "waitingForSlot");
    task.withdraw = this.#permits.acquire(() => {
      this.#run(task);
      resolve();
    }, "high");
    return promise;
  }

  /** The task holds a permit now: it runs, and its time starts. */
  #run(task: Task<Y>): void {
    this.#move(task, "running");
    const timeout = this.#settings.timeout;
    // startTimer() treats a time limit beyond what a timer counts as none.
    if (timeout !== undefined) {
      task.timer = startTimer(() => this.#timeOut(task), timeout.milliseconds);
    }
  }

  #start(task: Task<Y>): void {
    this.backlog.consumerStarted();
    registerSlot(task.update, task);
    this.#run(task);
    let promise: Promise<void>;
    const { consumer } = this.#settings;
    try {
      const tracked = task.tracked;
      promise = Promise.resolve(
        tracked === undefined
          ? consumer.consume(task.update)
          : tracked.within(() => consumer.consume(task.update)),
      );
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
    stopTimer(task.timer);
    task.tracked?.failed(error);
    if (task.state === "timedOut") {
      this.#report("lateFailure", error);
    } else {
      try {
        await this.#settings.errorHandler(error, task.update);
      } catch (thrown) {
        this.#report("errorHandler", thrown);
      }
    }
    this.#settle(task, "failed");
  }

  /** The consumer of a task ended; the task settles unless it had timed out. */
  #settle(task: Task<Y>, outcome: "handled" | "failed"): void {
    this.backlog.consumerEnded(task);
    if (task.state !== "timedOut") {
      this.#finish(task, outcome);
      this.#notifySettled(task.update, outcome);
    }
    this.backlog.wake();
  }

  #timeOut(task: Task<Y>): void {
    if (task.state !== "running") return;
    this.#finish(task, "timedOut");
    try {
      this.#settings.timeout?.handler(task.update, task.promise!);
    } catch (error) {
      this.#report("timeoutHandler", error);
    }
    this.#notifySettled(task.update, "timedOut");
    this.backlog.wake();
  }

  /** Gives a task its outcome: takes it out of the books and frees what it held. */
  #finish(task: Task<Y>, outcome: Outcome): void {
    stopTimer(task.timer);
    const state = task.state;
    this.#move(task, outcome);
    unregisterSlot(task.update);
    if (state === "running") {
      this.#permits.release();
    } else if (state === "waitingForSlot") {
      // The update ended while its `sequentialize()` chain still waited for
      // a permit (a middleware before it did not await next()): let the chain
      // go on without one rather than hold its key forever.
      task.withdraw?.();
      task.resume?.();
      this.#report("consumer");
    }
  }

  /** Every change of state passes here: the books, then what telemetry records of it. */
  #move(task: Task<Y>, state: TaskState): void {
    this.#telemetry?.moved(task, state);
    this.backlog.move(task, state);
  }

  #notifySettled(update: Y, outcome: Outcome): void {
    if (this.#settings.onSettled === undefined) return;
    try {
      this.#settings.onSettled(update, outcome);
    } catch (error) {
      this.#report("onSettled", error);
    }
  }

  /** The one way the sink reports what it could not hand to the bot; `error` is redacted. */
  #report(source: keyof typeof REPORTS, ...error: [] | [unknown]): void {
    const report: Report = error.length === 0 ? { source, message: REPORTS[source] } : {
      source,
      message: `${REPORTS[source]}: ${describe(error[0])}`,
      error: redactError(error[0]),
    };
    safeReport(this.#settings.reporter, report);
  }
}
