/**
 * The bot that runs inside a worker thread of `distribute()`. Create one
 * `BotWorker` at the top of the worker module and install your middleware on
 * it as on any grammY bot; the main thread sends it the bot info and the
 * updates, and it reports each update done. Updates with the same key (by
 * default the chat) run one after another, in the order they were sent;
 * updates with different keys run at once.
 *
 * ```ts ignore
 * // worker.ts
 * import { BotWorker } from "@grammyx/runner/worker";
 *
 * const bot = new BotWorker(Deno.env.get("BOT_TOKEN")!);
 * bot.on("message", (ctx) => ctx.reply("Handled in a worker thread"));
 * ```
 *
 * @module
 */

import process from "node:process";
import { type MessagePort, parentPort } from "node:worker_threads";
import { type Api, Bot, type BotConfig, BotError, type Context } from "./_deps.ts";
import { KeyedChains } from "./_chain.ts";
import { describe } from "./_redact.ts";
import type { DoneMessage, ExitMessage, ToWorker, UpdateMessage } from "./_pool.ts";

/** The parts of a Web Worker's global scope that a bot worker uses (Deno). */
interface WorkerScope {
  postMessage(message: DoneMessage | ExitMessage): void;
  close(): void;
  addEventListener(type: string, listener: (event: Event) => void): void;
}

/** How a bot worker talks to the main thread, on every runtime. */
interface MainThread {
  /** Posts a message to the main thread. */
  post(message: DoneMessage | ExitMessage): void;
  /** Calls `listener` with each message of the main thread. */
  onMessage(listener: (data: unknown) => void): void;
}

/**
 * grammY's `Bot`, `Context` and `Api` under local names: `BotWorker` is a
 * grammY `Bot` and takes the same type parameters.
 *
 * @internal
 */
const GrammyBot: typeof Bot = Bot;
/** @internal */
type GrammyBot<C extends Context, A extends Api> = Bot<C, A>;
/** @internal */
type GrammyContext = Context;
/** @internal */
type GrammyApi = Api;

/** Whether this thread already has a bot worker (a thread serves one bot). */
let listening = false;

/**
 * The main thread, if this code runs in a worker thread: a Deno Web Worker
 * (its global scope), else a `node:worker_threads` port (Node; Bun gives its
 * Web Workers one too). Either way the main thread is told before the worker
 * ends, so that it replaces it: on an uncaught error, on `self.close()`,
 * `Deno.exit()` or `process.exit()`.
 */
function mainThread(token: string): MainThread | undefined {
  const scope =
    (globalThis as { WorkerGlobalScope?: abstract new () => unknown }).WorkerGlobalScope;
  if (typeof scope === "function" && globalThis instanceof scope) {
    return connectScope(globalThis as unknown as WorkerScope, token);
  }
  return parentPort === null ? undefined : connectPort(parentPort, token);
}

function connectScope(scope: WorkerScope, token: string): MainThread {
  const close = scope.close.bind(scope);
  const exit = (reason: string) => {
    const message: ExitMessage = { type: "exit", reason };
    scope.postMessage(message);
    close();
  };
  scope.close = () => exit("The worker closed itself");
  const deno = (globalThis as { Deno?: { exit?: (code?: number) => never } }).Deno;
  const denoExit = deno?.exit?.bind(deno);
  if (deno !== undefined && denoExit !== undefined) {
    deno.exit = (code?: number): never => {
      const message: ExitMessage = {
        type: "exit",
        reason: `The worker called Deno.exit(${code ?? ""})`,
      };
      scope.postMessage(message);
      return denoExit(code);
    };
  }
  scope.addEventListener("error", (event) => {
    event.preventDefault();
    const error = (event as ErrorEvent).error ?? (event as ErrorEvent).message;
    exit(`Uncaught ${describe(error, token)}`);
  });
  scope.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    exit(`Uncaught (in promise) ${describe((event as PromiseRejectionEvent).reason, token)}`);
  });
  return {
    post: (message) => scope.postMessage(message),
    onMessage: (listener) =>
      scope.addEventListener("message", (event) => listener((event as MessageEvent).data)),
  };
}

function connectPort(port: MessagePort, token: string): MainThread {
  const post = (message: DoneMessage | ExitMessage) => port.postMessage(message);
  const processExit = process.exit.bind(process);
  const exit = (reason: string, code: number): never => {
    post({ type: "exit", reason });
    return processExit(code);
  };
  process.exit = (code?: number | string | null): never =>
    exit(`The worker called process.exit(${code ?? ""})`, Number(code ?? 0));
  // With these listeners the thread no longer ends by itself on an error.
  process.on("uncaughtException", (error) => exit(`Uncaught ${describe(error, token)}`, 1));
  process.on("unhandledRejection", (reason) => {
    exit(`Uncaught (in promise) ${describe(reason, token)}`, 1);
  });
  return { post, onMessage: (listener) => port.on("message", listener) };
}

/**
 * A grammY bot that handles the updates `distribute()` sends to its worker
 * thread. It behaves as a `Bot` in every way but two: it gets its bot info
 * (`me`) from the main thread instead of calling `getMe`, and it cannot be
 * started or stopped (the main thread's runner fetches the updates).
 *
 * Errors: middleware errors go to the error handler set with `bot.catch`. If
 * none is set, or it throws, the error is sent to the main thread (as text,
 * without the bot token), where the `distribute()` middleware rejects with
 * it, so the main bot's error handler sees it. An uncaught error,
 * `self.close()`, `Deno.exit()` or `process.exit()` ends the worker after
 * telling the main thread, which starts a new one and sends it the unfinished
 * updates again.
 *
 * Outside a worker thread (e.g. in a unit test of your handlers) it does not
 * listen for messages: you call `handleUpdate` yourself.
 *
 * @typeParam C The context type, as for `Bot`
 * @typeParam A The API type, as for `Bot`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BotWorker } from "@grammyx/runner/worker";
 *
 * const bot = new BotWorker("123456:placeholder-token", {
 *   botInfo: { id: 123456, is_bot: true, first_name: "Test", username: "test_bot" } as never,
 * });
 * const seen: string[] = [];
 * bot.on("message:text", (ctx) => void seen.push(ctx.msg.text));
 * await bot.handleUpdate({
 *   update_id: 1,
 *   message: {
 *     message_id: 1,
 *     date: 0,
 *     chat: { id: 7, type: "private", first_name: "A" },
 *     from: { id: 7, is_bot: false, first_name: "A" },
 *     text: "hi",
 *   },
 * });
 * assert.deepEqual(seen, ["hi"]);
 * assert.throws(() => bot.start(), /Cannot start a bot worker/);
 * ```
 */
export class BotWorker<C extends GrammyContext = GrammyContext, A extends GrammyApi = GrammyApi>
  extends GrammyBot<C, A> {
  /** The updates of each key, run one after another. */
  readonly #chains = new KeyedChains();

  /**
   * Creates the bot of this worker thread and, inside a worker, starts
   * listening for the main thread's messages.
   *
   * @param token The bot token (the same as the main bot's)
   * @param config The same options as grammY's `Bot` (`botInfo` is filled in from the main thread)
   * @throws {Error} if this worker thread already has a bot worker
   */
  constructor(token: string, config?: BotConfig<C>) {
    super(token, config);
    // Without bot.catch, errors go to the main thread's error handler.
    this.errorHandler = (error) => {
      throw error;
    };
    if (listening) throw new Error("Cannot create a second bot worker in the same worker thread");
    const main = mainThread(this.token);
    if (main === undefined) return;
    listening = true;
    this.#listen(main);
  }

  /**
   * Always throws: the main thread's runner fetches the updates.
   *
   * @returns Never
   * @throws {Error} always
   */
  override start(): never {
    throw new Error("Cannot start a bot worker! Use run() with distribute() in the main thread");
  }

  /**
   * Always throws: stop the main thread's runner instead.
   *
   * @returns Never
   * @throws {Error} always
   */
  override stop(): never {
    throw new Error("Cannot stop a bot worker! Stop the runner in the main thread");
  }

  #listen(main: MainThread): void {
    main.onMessage((data) => {
      const message = data as ToWorker | undefined;
      if (message?.type === "init") {
        if (!this.isInited()) this.botInfo = message.me as Bot["botInfo"];
      } else if (message?.type === "update") {
        this.#enqueue(message, main);
      }
    });
  }

  /** Runs the update after the earlier ones of its key, then reports it done. */
  #enqueue({ job, key, update }: UpdateMessage, main: MainThread): void {
    const typed = update as Parameters<Bot["handleUpdate"]>[0];
    const report = (error: string | undefined) => {
      const message: DoneMessage = error === undefined
        ? { type: "done", job, update_id: typed.update_id }
        : { type: "done", job, update_id: typed.update_id, error };
      main.post(message);
    };
    void this.#chains.run([key], async () => report(await this.#handle(typed)));
  }

  /** Handles an update; resolves with the error no handler took, as text without the token. */
  async #handle(update: Parameters<Bot["handleUpdate"]>[0]): Promise<string | undefined> {
    try {
      await this.handleUpdate(update);
      return undefined;
    } catch (error) {
      if (!(error instanceof BotError)) return describe(error, this.token);
      try {
        await this.errorHandler(error as BotError<C>);
        return undefined;
      } catch (thrown) {
        return describe(thrown, this.token);
      }
    }
  }
}
