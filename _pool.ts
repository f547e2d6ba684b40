// The worker pool behind `distribute()`: one worker thread per lane (a Web
// Worker, or a `node:worker_threads` Worker on Node: see _threads.ts), started
// when the first update is routed to that lane; the jobs each worker has not
// finished; and the replacement of a worker that crashed, which gets those
// jobs again in the order they were first sent. Not exported by mod.ts,
// except `WorkerFailure`, which distribute.ts re-exports: it lives here so
// that the pool does not import the module that uses it.

import { redact } from "./_redact.ts";
import { startThread, type Thread } from "./_threads.ts";

/** Main thread → worker: the bot info, sent first to every new worker. */
export interface InitMessage {
  type: "init";
  me: unknown;
}

/** Main thread → worker: one update to handle, after the earlier ones of `key`. */
export interface UpdateMessage {
  type: "update";
  job: number;
  key: string;
  update: unknown;
}

/** Worker → main thread: the update of `job` is done; `error` if no handler took it. */
export interface DoneMessage {
  type: "done";
  job: number;
  update_id: number;
  error?: string;
}

/** Worker → main thread: the worker is about to end (it closed itself, or crashed). */
export interface ExitMessage {
  type: "exit";
  reason: string;
}

/** What the main thread posts to a worker. */
export type ToWorker = InitMessage | UpdateMessage;
/** What a worker posts to the main thread. */
export type FromWorker = DoneMessage | ExitMessage;

/**
 * A worker thread of `distribute()` that crashed and was replaced, as passed
 * to the `onWorkerError` option.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { WorkerFailure } from "@grammyx/runner/distribute";
 *
 * const lines: string[] = [];
 * const onWorkerError = ({ worker, message, redispatched }: WorkerFailure) =>
 *   void lines.push(`worker ${worker}: ${message} (${redispatched} sent again)`);
 * onWorkerError({ worker: 1, message: "Uncaught Error: boom", redispatched: 3, abandoned: 0 });
 * assert.deepEqual(lines, ["worker 1: Uncaught Error: boom (3 sent again)"]);
 * ```
 */
export interface WorkerFailure {
  /** The lane of the worker, from 0 to `count - 1`. */
  worker: number;
  /** What happened, on one line, without the bot token. */
  message: string;
  /** Unfinished updates sent again to the replacement worker. */
  redispatched: number;
  /** Unfinished updates given up because too many workers crashed running them. */
  abandoned: number;
}

/** An update that was in flight in this many crashed workers is given up. */
export const MAX_CRASHES_PER_UPDATE = 3;

interface Job {
  id: number;
  key: string;
  update: { update_id: number };
  crashes: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface Lane {
  thread: Thread;
  /** Unfinished jobs in the order they were sent (a `Map` keeps insertion order). */
  jobs: Map<number, Job>;
}

/** What a worker pool needs besides the URL of the worker module. */
export interface WorkerPoolOptions {
  /** How many workers (lanes) it has. */
  count: number;
  /** The bot info, sent first to every new worker. */
  me: unknown;
  /** Called when a worker crashed and was replaced. */
  onFailure: (failure: WorkerFailure) => void;
  /** The bot token, removed from the errors of the workers. */
  token: string | undefined;
}

/** The workers of one `distribute()` middleware, until `close()`. */
export class WorkerPool {
  readonly #url: URL;
  readonly #me: unknown;
  readonly #onFailure: (failure: WorkerFailure) => void;
  readonly #token: string | undefined;
  #lanes: (Lane | undefined)[];
  #nextJob = 0;
  #closed = false;

  constructor(url: URL, { count, me, onFailure, token }: WorkerPoolOptions) {
    this.#url = url;
    this.#me = me;
    this.#onFailure = onFailure;
    this.#token = token;
    this.#lanes = new Array<Lane | undefined>(count).fill(undefined);
  }

  /** Whether `close()` was called; a closed pool takes no more updates. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends `update` to the worker of `lane`; settles when that worker reports it done. */
  dispatch(lane: number, key: string, update: { update_id: number }): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new Error(`Cannot handle update ${update.update_id} as its worker pool was closed`),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const job: Job = { id: ++this.#nextJob, key, update, crashes: 0, resolve, reject };
    try {
      this.#send(this.#lanes[lane] ?? this.#spawn(lane), job);
    } catch (error) {
      reject(new Error(`Cannot send update ${update.update_id} to a worker`, { cause: error }));
    }
    return promise;
  }

  /** Terminates every worker; updates still unfinished reject. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const lanes = this.#lanes;
    this.#lanes = [];
    const ending: Promise<void>[] = [];
    for (const lane of lanes) {
      if (lane === undefined) continue;
      ending.push(lane.thread.terminate());
      for (const job of lane.jobs.values()) {
        job.reject(
          new Error(
            `Update ${job.update.update_id} was not finished when its worker pool was closed`,
          ),
        );
      }
      lane.jobs.clear();
    }
    await Promise.all(ending);
  }

  #spawn(index: number): Lane {
    const jobs = new Map<number, Job>();
    const thread = startThread(this.#url, `grammyx-worker-${index}`, {
      message: (data) => this.#receive(index, lane, data as FromWorker),
      crash: (reason) => this.#replace(index, lane, reason),
    });
    const lane: Lane = { thread, jobs };
    this.#lanes[index] = lane;
    const init: InitMessage = { type: "init", me: this.#me };
    thread.postMessage(init);
    return lane;
  }

  #send(lane: Lane, job: Job): void {
    const message: UpdateMessage = {
      type: "update",
      job: job.id,
      key: job.key,
      update: job.update,
    };
    lane.thread.postMessage(message);
    lane.jobs.set(job.id, job);
  }

  #receive(index: number, lane: Lane, message: FromWorker): void {
    if (this.#lanes[index] !== lane || typeof message !== "object" || message === null) return;
    if (message.type === "done") {
      const job = lane.jobs.get(message.job);
      if (job === undefined) return;
      lane.jobs.delete(job.id);
      if (message.error === undefined) job.resolve();
      else {
        const reason = redact(String(message.error), this.#token);
        job.reject(
          new Error(`Update ${job.update.update_id} failed in worker ${index}: ${reason}`),
        );
      }
    } else if (message.type === "exit") {
      this.#replace(index, lane, String(message.reason));
    }
  }

  /** Ends a crashed worker and sends its unfinished jobs, in order, to a new one. */
  #replace(index: number, lane: Lane, reason: string): void {
    if (this.#lanes[index] !== lane) return;
    void lane.thread.terminate();
    this.#lanes[index] = undefined;
    const message = redact(reason.replace(/\s+/g, " ").trim(), this.#token);
    const again: Job[] = [];
    let abandoned = 0;
    for (const job of lane.jobs.values()) {
      if (++job.crashes < MAX_CRASHES_PER_UPDATE) {
        again.push(job);
        continue;
      }
      abandoned++;
      job.reject(
        new Error(
          `Update ${job.update.update_id} was given up after ${job.crashes} workers crashed running it: ${message}`,
        ),
      );
    }
    lane.jobs.clear();
    this.#onFailure({ worker: index, message, redispatched: again.length, abandoned });
    if (again.length === 0 || this.#closed) return;
    try {
      const next = this.#spawn(index);
      for (const job of again) this.#send(next, job);
    } catch (error) {
      for (const job of again) {
        job.reject(
          new Error(`Cannot send update ${job.update.update_id} to a new worker`, { cause: error }),
        );
      }
    }
  }
}

/**
 * The worker lane of a key: a 32-bit FNV-1a hash of its text, mixed with
 * murmur3's finalizer so that its low bits depend on every character.
 */
export function laneOf(key: string, count: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return (hash >>> 0) % count;
}
