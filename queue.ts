/**
 * Queues between an ingress and workers: `webhookTo(engine)` stores each
 * webhook update durably, once, and answers Telegram at once; `runFrom(bot,
 * engine)` runs the stored updates on any number of workers (isolates,
 * processes, machines) through the same sink as `run()`, keeping each key's
 * updates in `update_id` order. A queue engine maps the small
 * `QueueEngine` interface onto a store: `kvQueue()` (Deno KV) is the first.
 *
 * ```ts ignore
 * import { Bot } from "grammy";
 * import { runFrom, webhookTo } from "@grammyx/runner/queue";
 * import { kvQueue } from "@grammyx/runner/kv_queue";
 *
 * const bot = new Bot(Deno.env.get("BOT_TOKEN")!);
 * const engine = kvQueue(await Deno.openKv());
 * Deno.serve(webhookTo(engine, { secretToken: Deno.env.get("SECRET")! }));
 * runFrom(bot, engine);
 * ```
 *
 * @module
 */

import { botErrorHandler, checkSignal, doneWhenEnded, stopOnAbort } from "./_compose.ts";
import { MAX_DELAY } from "./_clock.ts";
import { LaneSupplier } from "./_lanes.ts";
import type { QueueEngine } from "./_queue_contract.ts";
import { describe, redactError } from "./_redact.ts";
import { defaultReporter, type Reporter, safeReport } from "./_report.ts";
import {
  isFunction,
  knownOptions,
  numberInRange,
  optionalObject,
  positiveInteger,
  show,
} from "./_validate.ts";
import type { BotAdapter } from "./fetcher.ts";
import { createRunner, type RunnerHandle } from "./runner.ts";
import { createConcurrentSink, type SinkOptions } from "./sink.ts";
import { createSource } from "./source.ts";

export type { QueueEngine };
export type { Lease, QueuedUpdate, QueueOutcome, QueueRecord } from "./_queue_contract.ts";

/**
 * Thrown by an engine's `store` for an update it cannot hold (too large for
 * its values); `webhookTo()` answers such a request with 413.
 */
export class UpdateTooLargeError extends RangeError {
  /** The id of the update. */
  readonly updateId: number;

  /**
   * Creates the error.
   *
   * @param updateId The id of the update
   * @param message What limit it broke
   */
  constructor(updateId: number, message: string) {
    super(message);
    this.name = "UpdateTooLargeError";
    this.updateId = updateId;
  }
}

/** Options of `webhookTo()`. */
export interface WebhookOptions {
  /**
   * The `secret_token` given to `setWebhook`: requests whose
   * `X-Telegram-Bot-Api-Secret-Token` header differs are answered 401
   * (compared in constant time). 1–256 characters `A-Z a-z 0-9 _ -`.
   *
   * @default {undefined} (no check: set one in production)
   */
  secretToken?: string;
  /**
   * The largest request body accepted, in bytes; larger ones get 413.
   *
   * @default {1_048_576} (1 MiB)
   */
  maxBodyBytes?: number;
  /**
   * Receives storage failures (answered 500, so Telegram retries).
   *
   * @default {defaultReporter} (one line on stderr)
   */
  reporter?: Reporter;
}

/**
 * Creates the webhook handler of a queue: a `Request → Response` function for
 * `Deno.serve` or any fetch-style server. It never runs bot code: it checks
 * the request, stores the update with `engine.store` (once per `update_id`)
 * and answers 200 only after the store was acknowledged, so an acknowledged
 * update is durable. A rejected request stores nothing:
 *
 * | answer | when |
 * | --- | --- |
 * | 405 | not `POST` |
 * | 401 | `secretToken` is set and the secret header differs |
 * | 413 | the body exceeds `maxBodyBytes`, or the engine cannot hold the update |
 * | 400 | the body is not a JSON object with an integer `update_id` ≥ 0 |
 * | 500 | the store failed (Telegram sends the update again) |
 * | 200 | stored, or stored before (a repeated delivery) |
 *
 * @param engine The queue engine, e.g. `kvQueue(kv)`
 * @param options Secret token, body limit, reporter
 * @returns The request handler
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { webhookTo } from "@grammyx/runner/queue";
 * import { kvQueue } from "@grammyx/runner/kv_queue";
 *
 * using kv = await Deno.openKv(":memory:");
 * const handler = webhookTo(kvQueue(kv), { secretToken: "s3cret" });
 * const post = (body: string, secret = "s3cret") =>
 *   handler(new Request("http://bot/", {
 *     method: "POST",
 *     body,
 *     headers: { "X-Telegram-Bot-Api-Secret-Token": secret },
 *   }));
 * assert.equal((await post('{"update_id":1}')).status, 200);
 * assert.equal((await post('{"update_id":1}', "wrong")).status, 401);
 * assert.equal((await post("[1]")).status, 400);
 * ```
 */
export function webhookTo<Y extends { update_id: number }>(
  engine: QueueEngine<Y>,
  options: WebhookOptions = {},
): (request: Request) => Promise<Response> {
  const subject = "Cannot create webhook handler";
  checkEngine(subject, engine);
  optionalObject(subject, "options", options);
  knownOptions(subject, options, ["secretToken", "maxBodyBytes", "reporter"]);
  const { secretToken, maxBodyBytes = 1_048_576, reporter = defaultReporter } = options;
  if (secretToken !== undefined) checkSecretToken(subject, secretToken);
  positiveInteger(subject, "maxBodyBytes", maxBodyBytes);
  isFunction(subject, "reporter", reporter);
  const expected = secretToken === undefined ? undefined : digest(secretToken);
  const stores = new GroupStore(engine);

  return async (request) => {
    if (request.method !== "POST") {
      return answer(405, "Method Not Allowed", { Allow: "POST" });
    }
    if (expected !== undefined) {
      const given = request.headers.get("X-Telegram-Bot-Api-Secret-Token") ?? "";
      if (!equalInConstantTime(await digest(given), await expected)) {
        return answer(401, "Unauthorized");
      }
    }
    const body = await readBody(request, maxBodyBytes);
    if (body === undefined) return answer(413, "Payload Too Large");
    const update = parseUpdate(body);
    if (update === undefined) {
      return answer(400, "Bad Request: expected a JSON object with an integer update_id >= 0");
    }
    try {
      await stores.store(update as Y);
    } catch (error) {
      if (error instanceof UpdateTooLargeError) {
        safeReport(reporter, { source: "webhook", message: error.message });
        return answer(413, "Payload Too Large");
      }
      safeReport(reporter, {
        source: "webhook",
        message:
          `Could not store update ${update.update_id} (answered 500: Telegram sends it again): ${
            describe(error)
          }`,
        error: redactError(error),
      });
      return answer(500, "Internal Server Error");
    }
    return answer(200, "OK");
  };
}

/** Updates stored in one engine call at most by the ingress. */
const GROUP_LIMIT = 100;
/** Engine calls of the ingress on their way at once; more requests wait and go together. */
const STORES_AT_ONCE = 4;

/**
 * The ingress's group commit: up to `STORES_AT_ONCE` requests are stored at
 * once, each alone; one that comes while all of those are on their way waits
 * and is stored with the others that came meanwhile, in one engine call, so
 * that under load many webhook requests share one storage write. A group
 * refused for what it holds (an update too large, a write over the store's
 * size limits) is split in halves until each request gets its own answer; a
 * group that fails otherwise (the store is down) fails every request in it,
 * each answered 500 and sent again by Telegram.
 */
class GroupStore<Y extends { update_id: number }> {
  readonly #engine: QueueEngine<Y>;
  #waiting: { update: Y; done: PromiseWithResolvers<void> }[] = [];
  #storing = 0;

  constructor(engine: QueueEngine<Y>) {
    this.#engine = engine;
  }

  /** Resolves once `update` is stored; rejects with what its store threw. */
  store(update: Y): Promise<void> {
    const done = Promise.withResolvers<void>();
    this.#waiting.push({ update, done });
    this.#next();
    return done.promise;
  }

  #next(): void {
    while (this.#storing < STORES_AT_ONCE && this.#waiting.length > 0) {
      const group = this.#waiting.splice(0, GROUP_LIMIT);
      this.#storing++;
      this.#storeGroup(group).finally(() => {
        this.#storing--;
        this.#next();
      });
    }
  }

  async #storeGroup(group: { update: Y; done: PromiseWithResolvers<void> }[]): Promise<void> {
    try {
      await this.#engine.store(group.map((entry) => entry.update));
      for (const entry of group) entry.done.resolve();
    } catch (error) {
      // A RangeError or TypeError is about what the group holds; anything
      // else would fail each update of it as well.
      const split = group.length > 1 && (error instanceof RangeError || error instanceof TypeError);
      if (!split) {
        for (const entry of group) entry.done.reject(error);
        return;
      }
      const half = Math.ceil(group.length / 2);
      await this.#storeGroup(group.slice(0, half));
      await this.#storeGroup(group.slice(half));
    }
  }
}

function answer(status: number, text: string, headers: Record<string, string> = {}): Response {
  return new Response(text, { status, headers: { "content-type": "text/plain", ...headers } });
}

/** The body, or `undefined` if it exceeds `max` bytes (then it is not read further). */
async function readBody(request: Request, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(request.headers.get("content-length") ?? 0);
  if (declared > max) {
    await request.body?.cancel().catch(() => {});
    return undefined;
  }
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/** The update in `body`, or `undefined` unless it is a JSON object with an integer `update_id` ≥ 0. */
function parseUpdate(body: Uint8Array): { update_id: number } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const id = (value as { update_id?: unknown }).update_id;
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) return undefined;
  return value as { update_id: number };
}

async function digest(text: string): Promise<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** Compares two digests of equal length without an early exit. */
function equalInConstantTime(a: Uint8Array, b: Uint8Array): boolean {
  let difference = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ (b[i] ?? 0);
  return difference === 0;
}

function checkSecretToken(subject: string, token: unknown): void {
  if (typeof token !== "string") {
    throw new TypeError(
      `${subject} as 'secretToken' must be a string: current value is ${show(token)}`,
    );
  }
  if (!/^[A-Za-z0-9_-]{1,256}$/.test(token)) {
    throw new RangeError(
      `${subject} as 'secretToken' must be 1-256 characters A-Z, a-z, 0-9, _ or - (what Telegram accepts): current value has ${token.length} characters`,
    );
  }
}

function checkEngine(subject: string, engine: unknown): void {
  const methods = ["store", "lanes", "listen", "lease", "read", "record", "release", "handBack"];
  if (
    typeof engine !== "object" || engine === null ||
    methods.some((name) => typeof (engine as Record<string, unknown>)[name] !== "function")
  ) {
    throw new TypeError(
      `${subject} as 'engine' must be a queue engine (e.g. kvQueue(kv)) with ${
        methods.join(", ")
      }: current value is ${show(engine)}`,
    );
  }
}

/** The members of a grammY `Bot` that `runFrom()` uses. */
export type QueueBot<Y, R> = Pick<
  BotAdapter<Y, R>,
  "init" | "handleUpdate" | "errorHandler" | "token"
>;

/** Options of `runFrom()`. */
export interface RunFromOptions<Y> {
  /**
   * How many updates may run at once in this worker (and how many lanes it
   * holds at most).
   *
   * @default {500}
   */
  concurrency?: number;
  /**
   * Bounds how long an update may run, as in `run()`'s sink options. A
   * timed-out update is recorded as `"timedOut"` once its task really ends;
   * its key waits until then.
   *
   * @default {undefined} (no timeout)
   */
  timeout?: SinkOptions<Y>["timeout"];
  /**
   * How long a lease on a lane lasts unless renewed (every third of it), in
   * milliseconds: a dead worker's lanes move to others after at most this.
   * At least 10, at most 2^31 − 1.
   *
   * @default {30_000}
   */
  leaseMilliseconds?: number;
  /**
   * How often to look for lanes with updates besides the wake-ups, in
   * milliseconds (the wake-ups of a local KV file do not cross processes:
   * several worker processes on one file find work by this). At least 1, at
   * most 2^31 − 1.
   *
   * @default {1_000}
   */
  pollMilliseconds?: number;
  /**
   * How many worker deaths (leases taken over) an update may cause before it
   * moves to the dead letters (and is reported) instead of running again.
   *
   * @default {3}
   */
  maxAttempts?: number;
  /** Called once per update when it is handled, failed or timed out. */
  onSettled?: SinkOptions<Y>["onSettled"];
  /**
   * OpenTelemetry providers and settings for the worker's metrics and spans,
   * as for `run()` (see "Operating it" in the README).
   *
   * @default {undefined} (the providers registered with `@opentelemetry/api`)
   */
  telemetry?: SinkOptions<Y>["telemetry"];
  /**
   * Receives what the worker could not hand to the bot: storage failures
   * (retried), dead letters, error handlers that threw.
   *
   * @default {defaultReporter} (one line on stderr)
   */
  reporter?: Reporter;
  /** Stops the worker (like `handle.stop()`) when it aborts. */
  signal?: AbortSignal;
}

/**
 * Runs the updates of a queue with a grammY bot: a worker. Start as many as
 * you like, in isolates, processes or machines sharing the queue. Each holds
 * lanes (a key's inbox for Deno KV) under expiring leases, runs each key's
 * updates one at a time in `update_id` order through the same sink as
 * `run()` (concurrency bound, timeouts, `bot.catch`, stats), and records each
 * outcome in the write that removes the update. A killed worker's lanes move
 * to another after `leaseMilliseconds`, which runs its unfinished updates
 * again (at least once). `stop()` takes nothing new, waits for what it
 * started, records it, and resolves; the rest stays queued.
 *
 * @param bot A grammY bot (anything that fits `QueueBot`)
 * @param engine The queue engine, e.g. `kvQueue(kv)`
 * @param options Concurrency, leases, timeouts, reporter
 * @returns A handle to stop the worker, wait for it, and read its stats
 * @throws {TypeError | RangeError} if an option is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runFrom, webhookTo } from "@grammyx/runner/queue";
 * import { kvQueue } from "@grammyx/runner/kv_queue";
 *
 * using kv = await Deno.openKv(":memory:");
 * const engine = kvQueue(kv);
 * const seen: number[] = [];
 * const bot = {
 *   handleUpdate: async (update: { update_id: number }) => void seen.push(update.update_id),
 *   errorHandler: () => {},
 * };
 * const handle = runFrom(bot, engine, { pollMilliseconds: 10 });
 * const ingress = webhookTo(engine);
 * for (const id of [3, 4]) {
 *   const body = JSON.stringify({ update_id: id, message: { chat: { id: 1 } } });
 *   await ingress(new Request("http://bot/", { method: "POST", body }));
 * }
 * while (seen.length < 2) await new Promise((ok) => setTimeout(ok, 5));
 * await handle.stop();
 * assert.deepEqual(seen, [3, 4]);
 * ```
 */
export function runFrom<Y extends { update_id: number }, R>(
  bot: QueueBot<Y, R>,
  engine: QueueEngine<Y>,
  options: RunFromOptions<Y> = {},
): RunnerHandle<Y> {
  const subject = "Cannot run worker";
  if (typeof bot !== "object" || bot === null || typeof bot.handleUpdate !== "function") {
    throw new TypeError(`${subject} as 'bot' must have handleUpdate and errorHandler`);
  }
  isFunction(subject, "bot.errorHandler", bot.errorHandler);
  checkEngine(subject, engine);
  optionalObject(subject, "options", options);
  knownOptions(subject, options, [
    "concurrency",
    "timeout",
    "leaseMilliseconds",
    "pollMilliseconds",
    "maxAttempts",
    "onSettled",
    "telemetry",
    "reporter",
    "signal",
  ]);
  const {
    concurrency = 500,
    timeout,
    leaseMilliseconds = 30_000,
    pollMilliseconds = 1_000,
    maxAttempts = 3,
    onSettled,
    telemetry,
    reporter = defaultReporter,
    signal,
  } = options;
  positiveInteger(subject, "concurrency", concurrency);
  positiveInteger(subject, "leaseMilliseconds", leaseMilliseconds);
  numberInRange(subject, "leaseMilliseconds", leaseMilliseconds, 10, MAX_DELAY);
  positiveInteger(subject, "pollMilliseconds", pollMilliseconds);
  numberInRange(subject, "pollMilliseconds", pollMilliseconds, 1, MAX_DELAY);
  positiveInteger(subject, "maxAttempts", maxAttempts);
  if (onSettled !== undefined) isFunction(subject, "onSettled", onSettled);
  isFunction(subject, "reporter", reporter);
  checkSignal(subject, signal);

  const supplier = new LaneSupplier<Y>({
    engine,
    owner: crypto.randomUUID(),
    leaseMilliseconds,
    pollMilliseconds,
    maxAttempts,
    maxLanes: concurrency,
    init: async (initSignal) => await bot.init?.(initSignal as never),
    reporter,
    token: bot.token,
  });
  const source = createSource(supplier);
  const sink = createConcurrentSink<Y, R>(
    { consume: (update) => bot.handleUpdate(update) },
    botErrorHandler(bot, reporter),
    {
      concurrency,
      reporter,
      ...(telemetry === undefined ? {} : { telemetry }),
      ...(timeout !== undefined && typeof timeout === "object" && timeout !== null &&
          typeof timeout.handler === "function"
        ? {
          timeout: {
            ...timeout,
            // A timed-out update is recorded once its task ends: its key waits till then.
            handler: doneWhenEnded(
              timeout.handler,
              (update) => supplier.settled(update, "timedOut"),
            ),
          },
        }
        : timeout === undefined
        ? {}
        : { timeout }),
      onSettled: (update, outcome) => {
        if (outcome !== "timedOut") supplier.settled(update, outcome);
        onSettled?.(update, outcome);
      },
    },
  );
  const handle = createRunner(source, sink);
  if (signal?.aborted) return handle;
  handle.start();
  if (signal !== undefined) stopOnAbort(handle, signal);
  return handle;
}
