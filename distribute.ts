/**
 * Spreads the work of a bot over worker threads: the main bot fetches the
 * updates with `run()` and hands each one to a `BotWorker` in a worker
 * thread, so CPU-heavy handlers use every core. Updates of one chat always go
 * to the same worker and run there in order; the runner's concurrency bound,
 * timeouts and `stop()` cover the work done in the workers.
 *
 * ```ts ignore
 * // main.ts (the worker module is in the docs of "@grammyx/runner/worker")
 * import { Bot } from "grammy";
 * import { run } from "@grammyx/runner";
 * import { distribute } from "@grammyx/runner/distribute";
 *
 * const bot = new Bot(Deno.env.get("BOT_TOKEN")!);
 * bot.use(distribute(new URL("./worker.ts", import.meta.url)));
 * run(bot);
 * ```
 *
 * @module
 */

import { statSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { keyOf } from "./_keys.ts";
import { laneOf, type WorkerFailure, WorkerPool } from "./_pool.ts";
import { slotOf } from "./_slots.ts";
import { canStartThreads } from "./_threads.ts";
import { sequentialize } from "./sequentialize.ts";
import { isFunction, knownOptions, optionalObject, positiveInteger, show } from "./_validate.ts";

export type { WorkerFailure } from "./_pool.ts";

/**
 * The key of an update: updates with the same key run in order, on one
 * worker. The rules are those of a `sequentialize()` key (see `Constraint`),
 * for a single key: a string, a number or a bigint (`5` and `"5"` are one
 * key); a falsy key (`undefined`, `null`, `""`, `0`) means no constraint; any
 * other value makes the middleware reject with a `TypeError`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { DistributeKey } from "@grammyx/runner/distribute";
 *
 * // One order per user across all chats, e.g. for a per-user session.
 * const byUser = (ctx: { from?: { id: number } }): DistributeKey => ctx.from?.id;
 * assert.equal(byUser({ from: { id: 42 } }), 42);
 * assert.equal(byUser({}), undefined);
 * ```
 */
export type DistributeKey = string | number | bigint | null | undefined;

/**
 * What `distribute()` reads from a context. grammY's `Context` fits; the
 * default key uses `chat` and `from`, and `me` is sent to the workers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Bot, type Context } from "grammy";
 * import { type DistributableContext, distribute } from "@grammyx/runner/distribute";
 *
 * const bot = new Bot("123456:placeholder-token");
 * bot.use(distribute<Context>(new URL("file:///app/worker.ts"), { count: 1 }));
 *
 * const ctx: DistributableContext = { update: { update_id: 7 }, chat: { id: -100123 } };
 * assert.equal(ctx.chat?.id, -100123);
 * ```
 */
export interface DistributableContext {
  /** The update; it is sent to a worker as is. */
  readonly update: { readonly update_id: number };
  /** The bot info; the workers get it instead of calling `getMe`. */
  readonly me?: unknown;
  /** The chat of the update, if any (grammY's `ctx.chat`). */
  readonly chat?: { readonly id: number } | undefined;
  /** The sender of the update, if any (grammY's `ctx.from`). */
  readonly from?: { readonly id: number } | undefined;
  /** The API client; its token is removed from the errors of the workers. */
  readonly api?: { readonly token?: string };
}

/**
 * Options of `distribute()`.
 *
 * @typeParam C The context type of the main bot
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Context } from "grammy";
 * import { distribute, type DistributeOptions, type WorkerFailure } from "@grammyx/runner/distribute";
 *
 * const failures: WorkerFailure[] = [];
 * const options: DistributeOptions<Context> = {
 *   count: 3,
 *   key: (ctx) => ctx.from?.id, // one order per user rather than per chat
 *   onWorkerError: (failure) => void failures.push(failure), // instead of a line on stderr
 * };
 * await using middleware = distribute(new URL("file:///app/worker.ts"), options);
 * assert.equal(typeof middleware.close, "function"); // no thread starts before the first update
 * assert.equal(failures.length, 0);
 * ```
 */
export interface DistributeOptions<C> {
  /**
   * How many worker threads to start. Each is started when the first update
   * is routed to it. The default leaves one core to the main thread, which
   * fetches the updates: on a 2-core machine that is a single worker.
   *
   * @default {Math.max(1, navigator.hardwareConcurrency - 1)} (4 if the number of cores is unknown)
   */
  count?: number;
  /**
   * The key of an update. Updates with the same key always go to the same
   * worker (chosen by a hash of the key) and run one after another, in the
   * order they reached this middleware: the next one is sent to the worker
   * when the one before it is done, and while it waits it holds none of the
   * runner's concurrency slots (as with `sequentialize()`), so one busy chat
   * cannot starve the others. Updates with different keys run at once.
   * A falsy key (`undefined`, `null`, `""`, `0`) puts no constraint on the
   * update; a key that is not a string, a number or a bigint makes the
   * middleware reject with a `TypeError` (the rules of `sequentialize()`).
   *
   * @default {(ctx) => ctx.chat?.id ?? ctx.from?.id} (else no constraint)
   */
  key?: (ctx: C) => DistributeKey;
  /**
   * Called when a worker crashed (an uncaught error, `self.close()`,
   * `Deno.exit()` or `process.exit()` in the worker, a module that fails to
   * load) and was
   * replaced. The updates it had not finished are sent again, in their
   * order, to the new worker, so they may run twice (at least once in all);
   * an update that was running in 3 workers that crashed is given up and
   * its middleware rejects. Must not throw.
   *
   * @default {a function printing one line on stderr with console.error}
   */
  onWorkerError?: (failure: WorkerFailure) => void;
}

/**
 * The middleware that `distribute()` returns. Install it last: it does not
 * call `next`. `close()` terminates its worker threads; `run()` does that
 * for you when it stops, so you only need it with `bot.start()` or your own
 * loop. An update after `close()` starts new workers.
 *
 * @typeParam C The context type of the main bot
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Bot } from "grammy";
 * import { distribute } from "@grammyx/runner/distribute";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 *
 * await using api = await FakeBotApi.start();
 * // The worker module, inline for this example; usually a file.
 * const worker = `
 *   import { BotWorker } from "@grammyx/runner/worker";
 *   const bot = new BotWorker("${api.token}", { client: { apiRoot: "${api.apiRoot}" } });
 *   bot.on("message:text", (ctx) => ctx.reply("echo: " + ctx.msg.text));
 * `;
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * const middleware = distribute(`data:application/typescript,${encodeURIComponent(worker)}`, { count: 1 });
 * bot.use(middleware);
 *
 * // Without run() (here by hand; the same with bot.start()), close the threads yourself.
 * await bot.init();
 * api.pushMessages(1, { text: () => "hi" });
 * for (const update of await bot.api.getUpdates()) await bot.handleUpdate(update);
 * await middleware.close();
 * assert.deepEqual(api.sentMessages, [{ chat_id: 1, text: "echo: hi" }]);
 * ```
 */
export interface DistributedMiddleware<C> extends AsyncDisposable {
  /**
   * Sends the update to its worker.
   *
   * @param ctx The context of the update
   * @returns A promise that resolves once the worker handled the update
   * @throws {Error} (rejects) if the update failed in the worker and no error handler there took it
   * @throws {TypeError} (rejects) if the `key` option returned something that is not a key
   */
  (ctx: C): Promise<void>;
  /**
   * Terminates the worker threads; updates still unfinished reject.
   *
   * @returns A promise that resolves once the threads are terminated
   */
  close(): Promise<void>;
}

const SUBJECT = "Cannot create distribute middleware";

/**
 * Creates middleware that handles each update in one of `count` worker
 * threads running the module at `specifier`, which creates a `BotWorker`.
 * The threads are Web Workers on Deno and Bun, and `node:worker_threads`
 * workers on Node (the same routing, order, crash and `stop()` rules).
 * The middleware resolves when the worker reports the update done, so the
 * runner's concurrency slot stays held meanwhile and `stop()` waits for the
 * workers. It rejects with an error (without the bot token) when the update
 * failed in the worker and no error handler there took it.
 *
 * Workers belong to the runner that ran the middleware: `stop()` terminates
 * them after the last update finished, and the next update starts new ones.
 * (So one middleware serves one runner at a time.) A worker that crashes is
 * replaced at once and gets the updates it had not finished again.
 *
 * The worker module must create its `BotWorker` when it loads: an update
 * sent to a worker without one never settles (a sink `timeout` catches it).
 *
 * @typeParam C The context type of the main bot: grammY's `Context` or any `DistributableContext`
 * @param specifier The worker module: a `URL` (`new URL("./worker.ts", import.meta.url)`), an absolute URL string (`file:`, `data:`), or an absolute file path, with or without its extension (`import.meta.dirname + "/worker"`, `__dirname + "/worker"`: the file itself, else with `.ts`, `.mts`, `.js`, `.mjs` or `.cjs`, else an `index` file in that folder)
 * @param options The number of workers, the key of an update, the crash reporter
 * @returns Middleware to install last, with a `close()` method
 * @throws {TypeError | RangeError} if `specifier` (a relative path, an absolute path that names no file) or an option is invalid, or an option name is unknown (a typo)
 * @throws {Error} if the runtime has neither Web Workers nor `node:worker_threads`
 *
 * @example Run a bot whose handlers run in two worker threads
 * ```ts
 * import assert from "node:assert/strict";
 * import { Bot } from "grammy";
 * import { run } from "@grammyx/runner";
 * import { distribute } from "@grammyx/runner/distribute";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 *
 * await using api = await FakeBotApi.start();
 * // The worker module, inline for this example. Usually it is a file:
 * // distribute(new URL("./worker.ts", import.meta.url))
 * const worker = `
 *   import { BotWorker } from "@grammyx/runner/worker";
 *   const bot = new BotWorker("${api.token}", { client: { apiRoot: "${api.apiRoot}" } });
 *   bot.on("message:text", (ctx) => ctx.reply(ctx.msg.text.toUpperCase()));
 * `;
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * bot.use(distribute(`data:application/typescript,${encodeURIComponent(worker)}`, { count: 2 }));
 * api.pushMessages(6, { chats: 3, text: (index) => `hello ${index}` });
 *
 * const handle = run(bot, { runner: { fetch: { timeout: 1 } } });
 * while (api.sentMessages.length < 6) await new Promise((ok) => setTimeout(ok, 5));
 * await handle.stop(); // waits for the workers, then terminates them
 * const texts = api.sentMessages.map((message) => message.text).sort();
 * assert.deepEqual(texts, ["HELLO 0", "HELLO 1", "HELLO 2", "HELLO 3", "HELLO 4", "HELLO 5"]);
 * ```
 *
 * @example Bad options are rejected at once
 * ```ts
 * import assert from "node:assert/strict";
 * import { distribute } from "@grammyx/runner/distribute";
 *
 * assert.throws(() => distribute(new URL("file:///app/worker.ts"), { count: 0 }), {
 *   name: "RangeError",
 *   message: "Cannot create distribute middleware as 'count' must be a positive integer: current value is 0",
 * });
 * assert.throws(() => distribute("./worker.ts"), TypeError); // not an absolute URL
 * const misspelt = { cuont: 2 } as { count?: number };
 * assert.throws(() => distribute(new URL("file:///app/worker.ts"), misspelt), {
 *   name: "TypeError",
 *   message: "Cannot create distribute middleware as 'cuont' is not an option: did you mean 'count'?",
 * });
 * ```
 */
export function distribute<C extends DistributableContext = DistributableContext>(
  specifier: string | URL,
  options: DistributeOptions<C> = {},
): DistributedMiddleware<C> {
  if (!canStartThreads()) {
    throw new Error(
      `${SUBJECT} as this runtime has neither Web Workers nor node:worker_threads`,
    );
  }
  const url = workerUrl(specifier);
  optionalObject(SUBJECT, "options", options);
  knownOptions(SUBJECT, options, ["count", "key", "onWorkerError"]);
  const { count = defaultCount(), key = defaultKey, onWorkerError = printWorkerFailure } = options;
  positiveInteger(SUBJECT, "count", count);
  isFunction(SUBJECT, "key", key);
  isFunction(SUBJECT, "onWorkerError", onWorkerError);
  const onFailure = (failure: WorkerFailure) => {
    try {
      onWorkerError(failure);
    } catch {
      printWorkerFailure(failure);
    }
  };

  // Updates wait for their key here, where sequentialize() gives their
  // concurrency slot back meanwhile: a busy chat cannot fill the runner with
  // updates that only queue up in a worker.
  const ordered = sequentialize((item: { update: unknown; key: string | undefined }) => item.key);
  let pool: WorkerPool | undefined;

  async function distributed(ctx: C): Promise<void> {
    const update = ctx.update;
    const text = keyOf(key(ctx), "distribute() key function");
    const chain = text ?? `update ${update.update_id}`;
    // The pool is chosen now (its threads start on the first dispatch): if it
    // is closed while the update waits for its turn, the update rejects
    // rather than starting threads that nobody would close.
    if (pool === undefined || pool.closed) {
      pool = new WorkerPool(url, { count, me: ctx.me, onFailure, token: ctx.api?.token });
    }
    const current = pool;
    slotOf(ctx)?.adopt(current);
    await ordered(
      { update, key: text },
      () => current.dispatch(laneOf(chain, count), chain, update),
    );
  }
  async function close(): Promise<void> {
    const current = pool;
    pool = undefined;
    await current?.close();
  }
  return Object.assign(distributed, { close, [Symbol.asyncDispose]: close });
}

/** Chat id, else sender id, else nothing (the update is then free to run at once). */
function defaultKey(ctx: DistributableContext): DistributeKey {
  return ctx.chat?.id ?? ctx.from?.id;
}

/** One thread per core but the main thread's; 4 if the number of cores is unknown. */
function defaultCount(): number {
  const cores = globalThis.navigator?.hardwareConcurrency;
  return typeof cores === "number" && Number.isInteger(cores) && cores > 0
    ? Math.max(1, cores - 1)
    : 4;
}

/** Prints one line about a worker that crashed, for the default `onWorkerError`. */
function printWorkerFailure(failure: WorkerFailure): void {
  const { worker, message, redispatched, abandoned } = failure;
  const lost = abandoned > 0 ? `, ${abandoned} given up` : "";
  console.error(
    `[grammyx/runner] Worker ${worker} crashed and was replaced (${message}); ` +
      `${redispatched} unfinished updates sent again${lost}`,
  );
}

/** Extensions tried, in this order, after an absolute path that names no file. */
const EXTENSIONS = [".ts", ".mts", ".js", ".mjs", ".cjs"];

/**
 * The URL of the worker module. A `URL` or an absolute URL string is taken
 * as is. An absolute file path is resolved as `@grammyjs/runner` resolved it
 * on Node (`distribute(__dirname + "/worker")`): the file itself, else the
 * path with an extension, else an `index` file in that folder. Anything else
 * (a relative path above all) is a `TypeError`.
 */
function workerUrl(specifier: unknown): URL {
  if (specifier instanceof URL) return specifier;
  if (typeof specifier === "string" && isAbsolutePath(specifier)) {
    const candidates = [
      specifier,
      ...EXTENSIONS.map((extension) => specifier + extension),
      ...EXTENSIONS.map((extension) => `${specifier.replace(/[\\/]+$/, "")}/index${extension}`),
    ];
    const file = candidates.find(isFile);
    if (file !== undefined) return pathToFileURL(file);
    throw new TypeError(
      `${SUBJECT} as 'specifier' must name a file (also tried the extensions ${
        EXTENSIONS.join(", ")
      } and an index file): current value is ${show(specifier)}`,
    );
  }
  if (typeof specifier === "string" && URL.canParse(specifier)) return new URL(specifier);
  throw new TypeError(
    `${SUBJECT} as 'specifier' must be an absolute URL such as new URL("./worker.ts", import.meta.url) or an absolute file path: current value is ${
      show(specifier)
    }`,
  );
}

/** A POSIX path from the root, or a Windows path from a drive or a share. */
function isAbsolutePath(text: string): boolean {
  return text.startsWith("/") || /^[A-Za-z]:[\\/]/.test(text) || text.startsWith("\\\\");
}

/** Whether `path` is a file; a missing path is not, any other failure (no permission) throws. */
function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw error;
  }
}
