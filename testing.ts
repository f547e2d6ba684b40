/**
 * A fake Telegram Bot API server for tests, demos and benchmarks. It listens
 * on 127.0.0.1 and answers grammY's real `Bot` over real HTTP: `getUpdates`
 * long-polls and confirms through `offset` like Telegram, faults come from a
 * seeded random generator, and `sendMessage` records what the bot sent.
 *
 * @example
 * ```ts
 * import { Bot } from "grammy";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * await using api = await FakeBotApi.start();
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * api.pushMessages(2, { text: (index) => `hello ${index}` });
 * const updates = await bot.api.getUpdates();
 * assert.deepEqual(updates.map((u) => u.message?.text), ["hello 0", "hello 1"]);
 * ```
 *
 * @module
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { delay, Queue } from "./_async.ts";
import { seededRandom } from "./_random.ts";
import { describe } from "./_redact.ts";
import { knownOptions, optionalObject, show } from "./_validate.ts";
import type { Message, Update, UserFromGetMe } from "./_deps.ts";

/**
 * Faults injected into `getUpdates` answers, each with its probability. They
 * are drawn from the seeded random generator, so a seed replays them.
 *
 * @example
 * ```ts
 * import { Bot, GrammyError } from "grammy";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * await using api = await FakeBotApi.start({ faults: { serverError: 1 } });
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * await assert.rejects(bot.api.getUpdates(), GrammyError);
 * assert.equal(api.stats.getUpdatesErrors, 1);
 * ```
 */
export interface FaultOptions {
  /** Probability (0..1) of an HTTP 500 "Internal Server Error". @default 0 */
  serverError?: number;
  /** Probability of a 429 "Too Many Requests: retry after N". @default 0 */
  tooManyRequests?: number;
  /** `retry_after` seconds of 429 answers, fractions allowed. @default 1 */
  retryAfter?: number;
  /** Probability that the answer breaks off after part of its body. @default 0 */
  cut?: number;
  /**
   * Probability of a malformed 200 answer: alternately a body that is not
   * JSON, and an update that lacks `update_id`. @default 0
   */
  malformed?: number;
}

/**
 * Options of {@linkcode FakeBotApi.start}.
 *
 * @example
 * ```ts
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * await using api = await FakeBotApi.start({ firstUpdateId: 100, seed: 7 });
 * assert.deepEqual(api.pushMessages(2), [100, 101]);
 * ```
 */
export interface FakeBotApiOptions {
  /** Token that requests must use; its number is the bot id. @default "123456:TEST-fake-token" */
  token?: string;
  /** Seed of the random generator of faults and synthetic updates. @default 1 */
  seed?: number;
  /** Faults injected into `getUpdates` answers. @default {} */
  faults?: FaultOptions;
  /** Latency added to `sendMessage` answers, in milliseconds. @default 0 */
  sendMessageLatency?: number;
  /** `update_id` of the first pushed update. @default 1 */
  firstUpdateId?: number;
}

/**
 * Counters of a {@linkcode FakeBotApi}, from its `stats` getter.
 *
 * @example
 * ```ts
 * import { Bot } from "grammy";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * await using api = await FakeBotApi.start();
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * const [id] = api.pushMessages(1);
 * await bot.api.getUpdates();
 * await bot.api.getUpdates({ offset: id! + 1 });
 * assert.equal(api.stats.delivered, 1);
 * assert.equal(api.stats.confirmed, 1);
 * assert.deepEqual(api.stats.requests, { getUpdates: 2 });
 * ```
 */
export interface FakeBotApiStats {
  /** Updates sent in `getUpdates` answers, re-deliveries included. */
  delivered: number;
  /** Updates confirmed, and so forgotten, through `offset`. */
  confirmed: number;
  /** Deliveries of an update that had been delivered before. */
  redelivered: number;
  /** Ids of the updates that were delivered more than once. */
  redeliveredIds: ReadonlySet<number>;
  /** Requests per method name, counting those with the right token. */
  requests: Readonly<Record<string, number>>;
  /** `getUpdates` calls answered with a fault or a 409 conflict. */
  getUpdatesErrors: number;
}

/**
 * Options of {@linkcode FakeBotApi.pushMessages}.
 *
 * @example
 * ```ts
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * await using api = await FakeBotApi.start();
 * assert.equal(api.pushMessages(3, { chatOf: (index) => index % 2 }).length, 3);
 * ```
 */
export interface PushMessagesOptions {
  /** Number of private chats to pick from, ids 1 to `chats`. @default 1 */
  chats?: number;
  /** Chat id of the message at `index`. @default a seeded random chat */
  chatOf?: (index: number, random: () => number) => number;
  /** Sender id of the message at `index`. @default the chat id */
  userOf?: (index: number, chatId: number) => number;
  /** Text of the message at `index`. @default `message ${index}` */
  text?: (index: number) => string;
}

/**
 * Options of {@linkcode FakeBotApi.pushCommand}.
 *
 * @example
 * ```ts
 * import { Bot } from "grammy";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * await using api = await FakeBotApi.start();
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * api.pushCommand("help", { chat: 7, username: "fake_bot", payload: "topics" });
 * const [update] = await bot.api.getUpdates();
 * assert.equal(update?.message?.text, "/help@fake_bot topics");
 * assert.deepEqual(update?.message?.entities, [{ type: "bot_command", offset: 0, length: 14 }]);
 * ```
 */
export interface PushCommandOptions {
  /** Id of the private chat the command is sent in. @default 1 */
  chat?: number;
  /** Id of the sender. @default the chat id */
  user?: number;
  /** Text after the command and a space, grammY's `ctx.match`. @default "" (none) */
  payload?: string;
  /** Bot username the command is addressed to, as in `/start@fake_bot`. @default none */
  username?: string;
}

/**
 * An update for {@linkcode FakeBotApi.push}: a grammY `Update`, with or
 * without `update_id`. (Tagged so that `deno doc --lint` accepts a type of
 * another package in a public signature.)
 *
 * @internal
 */
type UpdateToPush = Omit<Update, "update_id"> | Update;

/** A message as `Update.message` holds it (not from a channel). */
type NewMessage = NonNullable<Update["message"]>;

type Answer =
  | { ok: true; result: unknown }
  | {
    ok: false;
    error_code: number;
    description: string;
    parameters?: { retry_after: number } | undefined;
  };
/** What a request is answered with: a whole body, or a stream written as it comes. */
interface Reply {
  status: number;
  type: string;
  body: Uint8Array | ReadableStream<Uint8Array>;
}
interface Pending {
  update: Update;
  delivered: boolean;
}
interface HeldPoll {
  offset: number;
  limit: number;
  answer(answer: Answer): void;
}
interface Waiter {
  offset: number;
  settle(error?: unknown): void;
}

const CONFLICT = "Conflict: terminated by other getUpdates request; " +
  "make sure that only one bot instance is running";
const FAULTS = ["serverError", "tooManyRequests", "cut", "malformed"] as const;
const JSON_TYPE = "application/json";
const HTML_TYPE = "text/html";
const MESSAGE = {
  message_id: 1,
  date: 0,
  chat: { id: 1, type: "private", first_name: "User" },
};
const encoder = new TextEncoder();
/** How long `close()` lets answers reach clients that read them slowly, or never. */
const CLOSE_GRACE_MS = 1_000;
/** What Telegram marks as a command at the start of a text: `/name` or `/name@username`. */
const COMMAND = /^\/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{1,32})?/;
/** What a request's parameters read as once the server is closing. */
const CLOSING = Symbol("closing");

/**
 * A fake Telegram Bot API server on 127.0.0.1 for grammY bots. Start it, point
 * a `Bot` at its `apiRoot`, push updates, then check what the bot confirmed
 * and sent. Close it with `await using` or {@linkcode FakeBotApi.close}.
 *
 * @example
 * ```ts
 * import { Bot } from "grammy";
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * await using api = await FakeBotApi.start();
 * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
 * bot.on("message:text", (ctx) => ctx.reply(ctx.msg.text.toUpperCase()));
 * await bot.init();
 * api.pushMessages(1, { text: () => "hi" });
 * for (const update of await bot.api.getUpdates()) {
 *   await bot.handleUpdate(update);
 * }
 * assert.deepEqual(api.sentMessages, [{ chat_id: 1, text: "HI" }]);
 * ```
 */
export class FakeBotApi implements AsyncDisposable {
  /** Token that requests must use. */
  readonly token: string;
  #server: Server;
  #listening: Promise<void>;
  #apiRoot = "";
  #me: UserFromGetMe;
  #faults: Required<FaultOptions>;
  #sendMessageLatency: number;
  #firstUpdateId: number;
  #nextUpdateId: number;
  #faultRandom: () => number;
  #updateRandom: () => number;
  /** Pushed updates not yet confirmed, in id order. */
  #unconfirmed = new Queue<Pending>();
  #enqueuedAt: number[] = [];
  #offset = 0;
  #held: HeldPoll | undefined;
  #waiters = new Set<Waiter>();
  #conflictUntil = 0;
  #allowedUpdates: readonly string[] | undefined;
  #malformedAnswers = 0;
  #messageId = 0;
  #sent: Array<{ chat_id: number | string; text: string }> = [];
  #counts = { delivered: 0, confirmed: 0, redelivered: 0, getUpdatesErrors: 0 };
  #redeliveredIds = new Set<number>();
  #requests = new Map<string, number>();
  /** Aborts when `close()` is called: every handler then answers at once. */
  #closing = new AbortController();
  /** One promise per request, settled once its answer was sent or could not be. */
  #answers = new Set<Promise<void>>();
  #closed: Promise<void> | undefined;

  /**
   * Starts a fake Bot API server on 127.0.0.1, on a free port.
   *
   * @param options Token, seed, faults and latency of the server (default: `{}`).
   * @returns The running server; close it when done.
   * @throws {TypeError | RangeError} If an option is unknown, or has the wrong type or range.
   */
  static async start(options?: FakeBotApiOptions): Promise<FakeBotApi> {
    const api = new FakeBotApi(options ?? {});
    await api.#listening;
    return api;
  }

  private constructor(options: FakeBotApiOptions) {
    const context = "Cannot start fake Bot API";
    optionalObject(context, "options", options);
    knownOptions(context, options, [
      "token",
      "seed",
      "faults",
      "sendMessageLatency",
      "firstUpdateId",
    ]);
    const {
      token = "123456:TEST-fake-token",
      seed = 1,
      faults = {},
      sendMessageLatency = 0,
      firstUpdateId = 1,
    } = options;
    if (typeof token !== "string" || !/^\d+:[\w-]+$/.test(token)) {
      // A token is a secret: describe the value rather than print it.
      const value = typeof token === "string" ? "another string" : show(token);
      throw new TypeError(
        `${context} as 'token' must look like '<bot id>:<secret>': current value is ${value}`,
      );
    }
    check(context, "seed", seed, "an integer");
    check(
      context,
      "sendMessageLatency",
      sendMessageLatency,
      "a non-negative number",
    );
    check(context, "firstUpdateId", firstUpdateId, "a positive integer");
    this.#faults = readFaults(context, faults);
    this.token = token;
    this.#sendMessageLatency = sendMessageLatency;
    this.#firstUpdateId = this.#nextUpdateId = firstUpdateId;
    this.#faultRandom = seededRandom(seed);
    this.#updateRandom = seededRandom(seed ^ 0x5bd1e995);
    this.#me = {
      id: Number(token.split(":")[0]),
      is_bot: true,
      first_name: "Fake bot",
      username: "fake_bot",
      can_join_groups: true,
      can_read_all_group_messages: false,
      supports_inline_queries: false,
      can_connect_to_business: false,
      has_main_web_app: false,
      has_topics_enabled: false,
      allows_users_to_create_topics: false,
      can_manage_bots: false,
      supports_join_request_queries: false,
    };
    // node:http, which Deno, Node and Bun all have, so that a bot can be
    // tested on any of them.
    this.#server = createServer((incoming, outgoing) => this.#serve(incoming, outgoing));
    this.#listening = new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, "127.0.0.1", () => {
        this.#server.off("error", reject);
        const address = this.#server.address();
        const port = typeof address === "object" && address !== null ? address.port : 0;
        this.#apiRoot = `http://127.0.0.1:${port}`;
        resolve();
      });
    });
  }

  /** Root URL for grammY's `client.apiRoot`: "http://127.0.0.1:PORT". */
  get apiRoot(): string {
    return this.#apiRoot;
  }

  /** Counters of what happened so far. @returns A copy, a snapshot. */
  get stats(): FakeBotApiStats {
    return {
      ...this.#counts,
      redeliveredIds: new Set(this.#redeliveredIds),
      requests: Object.fromEntries(this.#requests),
    };
  }

  /** Messages sent through `sendMessage`, in arrival order. */
  get sentMessages(): ReadonlyArray<
    { chat_id: number | string; text: string }
  > {
    return this.#sent;
  }

  /**
   * Queues updates, giving each the next `update_id` in place of any it has,
   * and answers a held long poll.
   *
   * @param updates The updates to queue.
   * @returns Their ids.
   */
  push(...updates: UpdateToPush[]): number[] {
    return this.#enqueue(updates);
  }

  /**
   * Queues `count` text messages in private chats. A text that starts with a
   * command, such as `/start` or `/help@fake_bot`, gets the `bot_command`
   * entity Telegram adds (only there: a command later in a text gets none).
   *
   * @param count How many messages to queue.
   * @param options Chats, senders and texts of the messages (default: `{}`).
   * @returns The ids of their updates.
   * @throws {TypeError | RangeError} If `count` or `options.chats` is not an integer in range, or an option is unknown.
   */
  pushMessages(count: number, options?: PushMessagesOptions): number[] {
    const context = "Cannot push messages";
    check(context, "count", count, "a non-negative integer");
    optionalObject(context, "options", options);
    knownOptions(context, options, ["chats", "chatOf", "userOf", "text"]);
    const {
      chats = 1,
      chatOf = (_: number, random: () => number) => 1 + Math.floor(random() * chats),
      userOf = (_: number, chatId: number) => chatId,
      text = (index: number) => `message ${index}`,
    } = options ?? {};
    check(context, "chats", chats, "a positive integer");
    const date = Math.floor(Date.now() / 1000);
    return this.#enqueue(Array.from({ length: count }, (_, index) => {
      const chatId = chatOf(index, this.#updateRandom);
      return { message: this.#textMessage(chatId, userOf(index, chatId), text(index), date) };
    }));
  }

  /**
   * Queues a command, such as `/start payload`, sent in a private chat, with
   * the `bot_command` entity Telegram adds, so that grammY's `bot.command()`
   * takes it.
   *
   * @example
   * ```ts
   * import { Bot } from "grammy";
   * import { FakeBotApi } from "@grammyx/runner/testing";
   * import assert from "node:assert/strict";
   *
   * await using api = await FakeBotApi.start();
   * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
   * bot.command("start", (ctx) => ctx.reply(`welcome, ${ctx.match}`));
   * await bot.init();
   * api.pushCommand("start", { chat: 5, payload: "ref42" });
   * for (const update of await bot.api.getUpdates()) {
   *   await bot.handleUpdate(update);
   * }
   * assert.deepEqual(api.sentMessages, [{ chat_id: 5, text: "welcome, ref42" }]);
   * ```
   *
   * @param command The command without its slash, such as `"start"`.
   * @param options Chat, sender, payload and bot username of the command (default: `{}`).
   * @returns The id of its update.
   * @throws {TypeError | RangeError} If `command` or an option has the wrong type or shape, or an option is unknown.
   */
  pushCommand(command: string, options?: PushCommandOptions): number {
    const context = "Cannot push a command";
    optionalObject(context, "options", options);
    knownOptions(context, options, ["chat", "user", "payload", "username"]);
    const { chat = 1, user = chat, payload = "", username } = options ?? {};
    if (typeof command !== "string" || !/^[A-Za-z0-9_]{1,32}$/.test(command)) {
      throw new TypeError(
        `${context} as 'command' must be 1 to 32 letters, digits or underscores: current value is ${
          show(command)
        }`,
      );
    }
    check(context, "chat", chat, "a positive integer");
    check(context, "user", user, "a positive integer");
    if (typeof payload !== "string") {
      throw new TypeError(
        `${context} as 'payload' must be a string: current value is ${show(payload)}`,
      );
    }
    if (
      username !== undefined &&
      (typeof username !== "string" || !/^[A-Za-z0-9_]{1,32}$/.test(username))
    ) {
      throw new TypeError(
        `${context} as 'username' must be a bot username without '@': current value is ${
          show(username)
        }`,
      );
    }
    const text = `/${command}${username === undefined ? "" : `@${username}`}` +
      (payload === "" ? "" : ` ${payload}`);
    const date = Math.floor(Date.now() / 1000);
    return this.#enqueue([{ message: this.#textMessage(chat, user, text, date) }])[0]!;
  }

  /**
   * Tells when an update was pushed.
   *
   * @param updateId The id of the update.
   * @returns Epoch milliseconds, or `undefined` for an id never pushed.
   */
  enqueuedAt(updateId: number): number | undefined {
    return this.#enqueuedAt[updateId - this.#firstUpdateId];
  }

  /** Counts the pushed updates not yet confirmed. @returns Their number. */
  pending(): number {
    return this.#unconfirmed.length;
  }

  /** Tells how far updates are confirmed. @returns The greatest `offset` seen, 0 if none. */
  offset(): number {
    return this.#offset;
  }

  /**
   * Tells which update types the bot asked for through `allowed_updates`.
   * Like Telegram, the server keeps the last list a `getUpdates` gave; unlike
   * Telegram, it still delivers every pushed update.
   *
   * @example
   * ```ts
   * import { Bot } from "grammy";
   * import { FakeBotApi } from "@grammyx/runner/testing";
   * import assert from "node:assert/strict";
   *
   * await using api = await FakeBotApi.start();
   * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
   * assert.equal(api.allowedUpdates(), undefined);
   * await bot.api.getUpdates({ allowed_updates: ["message", "callback_query"] });
   * await bot.api.getUpdates();
   * assert.deepEqual(api.allowedUpdates(), ["message", "callback_query"]);
   * ```
   *
   * @returns The update types, or `undefined` if no call gave any.
   */
  allowedUpdates(): readonly string[] | undefined {
    return this.#allowedUpdates;
  }

  /** Tells whether a `getUpdates` call is held, waiting for updates. @returns `true` if so. */
  longPolling(): boolean {
    return this.#held !== undefined;
  }

  /**
   * Waits until every update with an id below `offset` is confirmed, that is
   * until {@linkcode FakeBotApi.offset} reaches `offset`.
   *
   * @example
   * ```ts
   * import { Bot } from "grammy";
   * import { FakeBotApi } from "@grammyx/runner/testing";
   * import assert from "node:assert/strict";
   *
   * await using api = await FakeBotApi.start();
   * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
   * const [id] = api.pushMessages(1);
   * const confirmed = api.whenConfirmed(id! + 1);
   * await bot.api.getUpdates({ offset: id! + 1 });
   * await confirmed;
   * assert.equal(api.pending(), 0);
   * ```
   *
   * @param offset The offset to wait for.
   * @param signal Stops the wait, rejecting with its reason.
   * @returns A promise that resolves once those updates are confirmed.
   * @throws {Error} If the server is closed first.
   */
  whenConfirmed(offset: number, signal?: AbortSignal): Promise<void> {
    if (this.#offset >= offset) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed) return Promise.reject(closedBefore(offset));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const onAbort = () => waiter.settle(signal?.reason);
    const waiter: Waiter = {
      offset,
      settle: (error) => {
        this.#waiters.delete(waiter);
        signal?.removeEventListener("abort", onAbort);
        if (error === undefined) resolve();
        else reject(error);
      },
    };
    this.#waiters.add(waiter);
    signal?.addEventListener("abort", onAbort);
    return promise;
  }

  /**
   * Replaces the faults; those left out become 0, and `retryAfter` 1.
   *
   * @param faults The new faults, `{}` for none.
   * @throws {TypeError | RangeError} If a fault is unknown, or has the wrong type or range.
   */
  setFaults(faults: FaultOptions): void {
    this.#faults = readFaults("Cannot set faults", faults);
  }

  /**
   * Acts as if another bot instance polled for a while: the held `getUpdates`
   * and all that arrive in the next `milliseconds` get a 409 conflict.
   *
   * @param milliseconds How long conflicts last.
   * @throws {TypeError | RangeError} If `milliseconds` is not a duration.
   */
  conflictFor(milliseconds: number): void {
    check(
      "Cannot simulate a conflict",
      "milliseconds",
      milliseconds,
      "a non-negative number",
    );
    this.#conflictUntil = Date.now() + milliseconds;
    this.#held?.answer(this.#conflict());
  }

  /**
   * Answers a held long poll with no updates and every other request with a
   * 500 "the server is closing", lets those answers reach their clients (for
   * at most a second), then closes every connection and waits until the
   * server has shut down. It ends whatever clients do, even one that sent
   * only part of a request. Calling it again returns the same promise.
   *
   * @returns A promise that resolves once the server is closed.
   */
  close(): Promise<void> {
    this.#closed ??= this.#shutDown();
    return this.#closed;
  }

  /** Closes the server, for `await using`. @returns What {@linkcode FakeBotApi.close} returns. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #shutDown(): Promise<void> {
    this.#closing.abort();
    this.#held?.answer(success([]));
    for (const waiter of this.#waiters) {
      waiter.settle(closedBefore(waiter.offset));
    }
    // A graceful close would wait forever for a request whose body never
    // ends. So wait until every answer is out (or the grace is over), let the
    // server write them out, then close every connection.
    const graceOver = new AbortController();
    await Promise.race([Promise.all(this.#answers), delay(CLOSE_GRACE_MS, graceOver.signal)]);
    graceOver.abort();
    // An answer counts as sent before its bytes are on the socket: one turn
    // of the event loop lets the server write them.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  /** Answers one request, keeping bugs off the console and the token out of what the client reads. */
  #serve(incoming: IncomingMessage, outgoing: ServerResponse): void {
    const answered: Promise<void> = new Promise<void>((resolve) => outgoing.once("close", resolve))
      .finally(() => this.#answers.delete(answered));
    this.#answers.add(answered);
    // Writing to a client that hung up fails: there is nobody to tell.
    outgoing.on("error", () => {});
    this.#handle(incoming)
      .catch((error: unknown) => respond(failure(500, describe(error, this.token))))
      .then((reply) => send(reply, outgoing));
  }

  async #handle(incoming: IncomingMessage): Promise<Reply> {
    const url = new URL(incoming.url ?? "/", "http://127.0.0.1");
    const path = /^\/bot([^/]*)\/([^/]+)$/.exec(url.pathname);
    if (path === null) return respond(failure(404, "Not Found"));
    if (path[1] !== this.token) return respond(failure(401, "Unauthorized"));
    const method = path[2]!;
    this.#requests.set(method, (this.#requests.get(method) ?? 0) + 1);
    const params = await unlessAborted(readParams(url, incoming), this.#closing.signal);
    if (params === CLOSING) return respond(closingFailure());
    if (params === undefined) {
      return respond(failure(400, "Bad Request: cannot parse the parameters"));
    }
    if (method === "getUpdates") return this.#getUpdates(params);
    if (method === "sendMessage") return await this.#sendMessage(params);
    return respond(success(method === "getMe" ? this.#me : true));
  }

  #getUpdates(params: Record<string, unknown>): Reply {
    const fault = this.#pickFault();
    if (fault !== undefined) return fault;
    if (Date.now() < this.#conflictUntil) return respond(this.#conflict());
    this.#held?.answer(this.#conflict());
    this.#allowedUpdates = readAllowedUpdates(params.allowed_updates) ?? this.#allowedUpdates;
    const offset = Math.trunc(toNumber(params.offset, 0));
    const limit = Math.min(
      Math.max(Math.trunc(toNumber(params.limit, 100)), 1),
      100,
    );
    const timeout = Math.max(toNumber(params.timeout, 0), 0);
    if (offset > 0) this.#confirm(offset);
    const selected = this.#select(offset, limit);
    if (selected.length > 0 || timeout === 0 || this.#closed) {
      return respond(success(this.#deliver(selected)));
    }
    // A held poll answers with a body stream that gets its JSON later; the
    // stream is cancelled when the client hangs up (see `send`).
    let body!: ReadableStreamDefaultController<Uint8Array>;
    const release = () => {
      clearTimeout(timer);
      if (this.#held === poll) this.#held = undefined;
    };
    const poll: HeldPoll = {
      offset,
      limit,
      answer(answer) {
        release();
        try {
          body.enqueue(encoder.encode(JSON.stringify(answer)));
          body.close();
        } catch {
          // The client hung up before the body was cancelled: nobody to answer.
        }
      },
    };
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => void (body = controller),
      cancel: release,
    });
    const wait = Math.min(timeout * 1000, 2 ** 31 - 1);
    const timer = setTimeout(() => poll.answer(success([])), wait);
    this.#held = poll;
    return { status: 200, type: JSON_TYPE, body: stream };
  }

  /** Decides by the seeded generator whether this call gets a fault. */
  #pickFault(): Reply | undefined {
    const roll = this.#faultRandom();
    let threshold = 0;
    const fault = FAULTS.find((name) => roll < (threshold += this.#faults[name]));
    if (fault === undefined) return undefined;
    this.#counts.getUpdatesErrors++;
    const { retryAfter } = this.#faults;
    switch (fault) {
      case "serverError":
        return respond(failure(500, "Internal Server Error"));
      case "tooManyRequests":
        return respond(
          failure(429, `Too Many Requests: retry after ${retryAfter}`, {
            retry_after: retryAfter,
          }),
        );
      case "cut":
        return brokenOff('{"ok":true,"result":[{"update_id":');
      case "malformed":
        if (this.#malformedAnswers++ % 2 === 0) {
          return { status: 200, type: HTML_TYPE, body: encoder.encode("<html>Bad Gateway</html>") };
        }
        return respond(success([{ message: { ...MESSAGE, text: "no id" } }]));
    }
  }

  #conflict(): Answer {
    this.#counts.getUpdatesErrors++;
    return failure(409, CONFLICT);
  }

  #confirm(offset: number): void {
    this.#offset = Math.max(this.#offset, offset);
    while ((this.#unconfirmed.peek()?.update.update_id ?? offset) < offset) {
      this.#unconfirmed.shift();
      this.#counts.confirmed++;
    }
    for (const waiter of this.#waiters) {
      if (waiter.offset <= this.#offset) waiter.settle();
    }
  }

  /** Picks the first `limit` unconfirmed updates, or those from the `-offset`th last on. */
  #select(offset: number, limit: number): Pending[] {
    const start = offset < 0 ? Math.max(0, this.#unconfirmed.length + offset) : 0;
    return this.#unconfirmed.slice(start, start + limit);
  }

  #deliver(selected: Pending[]): Update[] {
    for (const pending of selected) {
      this.#counts.delivered++;
      if (pending.delivered) {
        this.#counts.redelivered++;
        this.#redeliveredIds.add(pending.update.update_id);
      }
      pending.delivered = true;
    }
    return selected.map((pending) => pending.update);
  }

  #enqueue(updates: Array<Omit<Update, "update_id">>): number[] {
    const now = Date.now();
    const ids = updates.map((update) => {
      const id = this.#nextUpdateId++;
      this.#unconfirmed.push({
        update: { ...update, update_id: id },
        delivered: false,
      });
      this.#enqueuedAt.push(now);
      return id;
    });
    const held = this.#held;
    const selected = held ? this.#select(held.offset, held.limit) : [];
    if (selected.length > 0) held?.answer(success(this.#deliver(selected)));
    return ids;
  }

  /** A text message in a private chat, with the entity Telegram gives a leading command. */
  #textMessage(chatId: number, userId: number, text: string, date: number): NewMessage {
    const message: NewMessage = {
      message_id: ++this.#messageId,
      date,
      chat: { id: chatId, type: "private", first_name: "User" },
      from: { id: userId, is_bot: false, first_name: "User" },
      text,
    };
    const command = COMMAND.exec(text)?.[0];
    if (command !== undefined) {
      message.entities = [{ type: "bot_command", offset: 0, length: command.length }];
    }
    return message;
  }

  async #sendMessage(params: Record<string, unknown>): Promise<Reply> {
    const { chat_id, text } = params;
    if (
      (typeof chat_id !== "number" && typeof chat_id !== "string") ||
      chat_id === ""
    ) {
      return respond(failure(400, "Bad Request: chat_id is empty"));
    }
    if (typeof text !== "string" || text === "") {
      return respond(failure(400, "Bad Request: message text is empty"));
    }
    if (this.#sendMessageLatency > 0) await delay(this.#sendMessageLatency, this.#closing.signal);
    if (this.#closing.signal.aborted) return respond(closingFailure());
    this.#sent.push({ chat_id, text });
    const message: Message = {
      message_id: ++this.#messageId,
      date: Math.floor(Date.now() / 1000),
      chat: { id: Number(chat_id), type: "private", first_name: "User" },
      text,
    };
    return respond(success(message));
  }
}

/** A 200 answer whose body errors after `start`, so the client sees a network error. */
function brokenOff(start: string): Reply {
  const body = new ReadableStream<Uint8Array>({
    start: (controller) => controller.enqueue(encoder.encode(start)),
    pull: (controller) => controller.error(new Error("Connection cut")),
  });
  return { status: 200, type: JSON_TYPE, body };
}

/**
 * Writes `reply` to the client. A whole body goes out with its length; a
 * stream goes out chunk by chunk, is cancelled if the client hangs up, and
 * cuts the connection if it errors.
 */
async function send(reply: Reply, outgoing: ServerResponse): Promise<void> {
  const { status, type, body } = reply;
  if (body instanceof Uint8Array) {
    outgoing.writeHead(status, { "content-type": type, "content-length": body.length });
    outgoing.end(body);
    return;
  }
  outgoing.writeHead(status, { "content-type": type });
  const reader = body.getReader();
  const onHangUp = () => void reader.cancel().catch(() => {});
  outgoing.once("close", onHangUp);
  // Cutting the connection before what was written reached the socket would
  // look to the client like a connection that died idle, which it retries.
  let written = Promise.resolve();
  try {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      written = new Promise((resolve) => outgoing.write(chunk.value, () => resolve()));
    }
    outgoing.end();
  } catch {
    await written;
    outgoing.destroy();
  } finally {
    outgoing.off("close", onHangUp);
  }
}

function success(result: unknown): Answer {
  return { ok: true, result };
}

function failure(
  code: number,
  description: string,
  parameters?: { retry_after: number },
): Answer {
  return { ok: false, error_code: code, description, parameters };
}

function closingFailure(): Answer {
  return failure(500, "Internal Server Error: the server is closing");
}

function respond(answer: Answer): Reply {
  const body = encoder.encode(JSON.stringify(answer));
  return { status: answer.ok ? 200 : answer.error_code, type: JSON_TYPE, body };
}

/**
 * Reads the parameters of a call the ways Telegram takes them: the query
 * string, then a URL-encoded, multipart or JSON body, whose values win. Query
 * and form values stay strings, as Telegram gets them.
 *
 * @returns `undefined` if unreadable.
 */
async function readParams(
  url: URL,
  incoming: IncomingMessage,
): Promise<Record<string, unknown> | undefined> {
  const params: Record<string, unknown> = Object.fromEntries(url.searchParams);
  const contentType = incoming.headers["content-type"] ?? "";
  const type = contentType.split(";")[0]?.trim().toLowerCase();
  try {
    const bytes = await readBody(incoming);
    if (type === "multipart/form-data" || type === "application/x-www-form-urlencoded") {
      const form = await new Response(bytes, { headers: { "content-type": contentType } })
        .formData();
      for (const [name, value] of form) {
        params[name] = typeof value === "string" ? value : value.name;
      }
      return params;
    }
    const text = new TextDecoder().decode(bytes);
    if (text === "") return params;
    const body: unknown = JSON.parse(text);
    const isObject = typeof body === "object" && body !== null && !Array.isArray(body);
    return isObject ? { ...params, ...body } : undefined;
  } catch {
    return undefined;
  }
}

/** The whole body of a request. @throws {Error} If the client hangs up first. */
function readBody(incoming: IncomingMessage): Promise<Uint8Array<ArrayBuffer>> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    incoming.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    incoming.once("end", () => resolve(concat(chunks)));
    incoming.once("error", reject);
    incoming.once("close", () => reject(new Error("The client hung up")));
  });
}

function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/**
 * Reads `allowed_updates` like Telegram: an array of strings, or the JSON
 * text of one (as query strings and forms carry it).
 *
 * @returns The update types, or `undefined` if missing or unreadable (Telegram then keeps the previous setting).
 */
function readAllowedUpdates(value: unknown): string[] | undefined {
  let list: unknown = value;
  if (typeof value === "string") {
    try {
      list = JSON.parse(value);
    } catch {
      return undefined;
    }
  }
  if (!Array.isArray(list) || !list.every((item) => typeof item === "string")) return undefined;
  return list;
}

/** What `promise` resolves to, or {@linkcode CLOSING} as soon as `signal` aborts. */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | typeof CLOSING> {
  if (signal.aborted) return Promise.resolve(CLOSING);
  const { promise: aborted, resolve } = Promise.withResolvers<typeof CLOSING>();
  const onAbort = () => resolve(CLOSING);
  signal.addEventListener("abort", onAbort, { once: true });
  return Promise.race([promise, aborted]).finally(() =>
    signal.removeEventListener("abort", onAbort)
  );
}

function readFaults(
  context: string,
  faults: FaultOptions,
): Required<FaultOptions> {
  if (typeof faults !== "object" || faults === null) {
    const value = show(faults);
    throw new TypeError(
      `${context} as 'faults' must be an object: current value is ${value}`,
    );
  }
  knownOptions(context, faults, [...FAULTS, "retryAfter"], "faults");
  const {
    serverError = 0,
    tooManyRequests = 0,
    retryAfter = 1,
    cut = 0,
    malformed = 0,
  } = faults;
  const result = { serverError, tooManyRequests, cut, malformed, retryAfter };
  for (const name of FAULTS) {
    check(context, `faults.${name}`, result[name], "a number from 0 to 1");
  }
  check(context, "faults.retryAfter", retryAfter, "a non-negative number");
  const sum = serverError + tooManyRequests + cut + malformed;
  if (sum > 1 + 1e-9) {
    throw new RangeError(
      `${context} as the fault probabilities must add up to at most 1: current sum is ${sum}`,
    );
  }
  return result;
}

const REQUIREMENTS = {
  "an integer": Number.isSafeInteger,
  "a positive integer": (n: number) => Number.isSafeInteger(n) && n > 0,
  "a non-negative integer": (n: number) => Number.isSafeInteger(n) && n >= 0,
  "a non-negative number": (n: number) => n >= 0 && n < Infinity,
  "a number from 0 to 1": (n: number) => n >= 0 && n <= 1,
};

/** @throws {TypeError | RangeError} If `value` is not a number, or not in range. */
function check(
  context: string,
  name: string,
  value: unknown,
  requirement: keyof typeof REQUIREMENTS,
): void {
  const message = `${context} as '${name}' must be ${requirement}: current value is ${show(value)}`;
  if (typeof value !== "number") throw new TypeError(message);
  if (!REQUIREMENTS[requirement](value)) throw new RangeError(message);
}

function toNumber(value: unknown, fallback: number): number {
  const number = typeof value === "string" ? Number(value) : value;
  return typeof number === "number" && Number.isFinite(number) ? number : fallback;
}

function closedBefore(offset: number): Error {
  return new Error(
    `Cannot wait for offset ${offset} as the fake Bot API was closed`,
  );
}
