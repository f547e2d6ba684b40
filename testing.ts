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
import { delay } from "./_async.ts";
import { seededRandom } from "./_random.ts";
import { describe } from "./_redact.ts";
import { type DeliveryResult, WebhookDelivery } from "./_fake_webhook.ts";
import { knownOptions, optionalObject, show } from "./_validate.ts";
import type { Message, Update, UserFromGetMe, WebhookInfo } from "./_deps.ts";

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
  /**
   * Milliseconds a webhook request may stay unanswered before it counts as
   * failed and its update is sent again (Telegram gives up after about a
   * minute). @default 60000
   */
  webhookTimeout?: number;
  /**
   * Milliseconds of one unit of the webhook retry backoff, a second at
   * Telegram: a failed update is sent again at once, then after 2, 4, 8, ...
   * units, at most 60 to 120 (seeded); an answer with `Retry-After: n` waits
   * n units instead. Tests set it to 1. @default 1000
   */
  webhookRetryUnit?: number;
  /**
   * Called after each webhook request with how it ended, for instance to
   * measure how fast the receiver answers. @default none
   */
  onWebhookResult?: (result: WebhookResult) => void;
}

/**
 * How one webhook request of a {@linkcode FakeBotApi} ended, as
 * {@linkcode FakeBotApiOptions.onWebhookResult} gets it.
 *
 * @example
 * ```ts
 * import { FakeBotApi, type WebhookResult } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * const results: WebhookResult[] = [];
 * await using receiver = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => new Response());
 * await using api = await FakeBotApi.start({ onWebhookResult: (r) => results.push(r) });
 * await api.setWebhook(`http://127.0.0.1:${receiver.addr.port}/`);
 * const [id] = api.pushMessages(1);
 * await api.whenAcknowledged();
 * assert.equal(results[0]?.updateId, id);
 * assert.equal(results[0]?.outcome, "acknowledged");
 * ```
 */
export interface WebhookResult {
  /** The update posted. */
  updateId: number;
  /** Which request for this update it was, since the webhook was set: 1, 2, ... */
  attempt: number;
  /**
   * `"acknowledged"` for a 2xx answer, `"rejected"` for another status,
   * `"timed out"` past `webhookTimeout`, `"dropped"` if the connection
   * failed or closed before the answer was read.
   */
  outcome: "acknowledged" | "rejected" | "timed out" | "dropped";
  /** HTTP status of the answer, if one came. */
  status?: number;
  /** Time from sending the request to the end of its answer, or to the failure. */
  milliseconds: number;
}

/**
 * Options of {@linkcode FakeBotApi.setWebhook}, the parameters of the Bot
 * API's `setWebhook` in camel case.
 *
 * @example
 * ```ts
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * await using api = await FakeBotApi.start();
 * await api.setWebhook("https://example.com/hook", { secretToken: "s3cret", maxConnections: 5 });
 * assert.equal(api.webhookInfo().max_connections, 5);
 * await api.deleteWebhook();
 * ```
 */
export interface SetWebhookOptions {
  /** Sent in every request's `X-Telegram-Bot-Api-Secret-Token` header unless empty: at most 256 of `A-Z a-z 0-9 _ -`. @default "" (none) */
  secretToken?: string;
  /** Most requests open at once, 1 to 100. @default 40 */
  maxConnections?: number;
  /** Forget the updates not yet delivered. @default false */
  dropPendingUpdates?: boolean;
  /** Update types to ask for (kept like Telegram, not used to filter). @default the previous list */
  allowedUpdates?: readonly string[];
}

/**
 * Counters of the webhook deliveries of a {@linkcode FakeBotApi}, from its
 * `webhookStats` getter, across every webhook set so far.
 *
 * @example
 * ```ts
 * import { FakeBotApi } from "@grammyx/runner/testing";
 * import assert from "node:assert/strict";
 *
 * let calls = 0;
 * const handler = () => new Response(null, { status: ++calls === 1 ? 500 : 200 });
 * await using receiver = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * await using api = await FakeBotApi.start({ webhookRetryUnit: 1 });
 * await api.setWebhook(`http://127.0.0.1:${receiver.addr.port}/`);
 * api.pushMessages(1);
 * await api.whenAcknowledged();
 * const { delivered, retried, acknowledged, rejected, pending } = api.webhookStats;
 * assert.deepEqual({ delivered, retried, acknowledged, rejected, pending }, {
 *   delivered: 2,
 *   retried: 1,
 *   acknowledged: 1,
 *   rejected: 1,
 *   pending: 0,
 * });
 * ```
 */
export interface FakeWebhookStats {
  /** Requests that ended (answered or failed), retries included; `inFlight` more are open. */
  delivered: number;
  /** Requests that sent an update again after a failure. */
  retried: number;
  /** Updates acknowledged with a 2xx answer, and so forgotten. */
  acknowledged: number;
  /** Answers with a status outside 200..299. */
  rejected: number;
  /** Requests unanswered after `webhookTimeout`. */
  timedOut: number;
  /** Requests whose connection failed or closed before the answer was read. */
  dropped: number;
  /** Pushed updates not acknowledged (nor confirmed through `getUpdates`) yet. */
  pending: number;
  /** Requests open now. */
  inFlight: number;
  /** The most requests that were open at once. */
  maxInFlight: number;
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
 * without `update_id` (the fake gives each update the next id anyway).
 *
 * @internal
 */
type UpdateToPush = Omit<Update, "update_id"> | Update;

/**
 * What the Bot API's `getWebhookInfo` answers: grammY's `WebhookInfo` (the
 * URL, the pending update count, the last error).
 *
 * @internal
 */
type WebhookInfoAnswer = WebhookInfo;

/** A message as `Update.message` holds it (not from a channel). */
type NewMessage = NonNullable<Update["message"]>;

type Answer =
  | { ok: true; result: unknown; description?: string }
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
/** Settles a wait: resolves it without an error, rejects it with one. */
type Settle = (error?: unknown) => void;
interface Waiter {
  offset: number;
  settle: Settle;
}

/**
 * A wait that `enlist` puts where it will be settled, and that `signal`
 * rejects with its reason. Settling it calls what `enlist` returned (which
 * takes it off again) and forgets the signal.
 */
function waitUntilSettled(
  signal: AbortSignal | undefined,
  enlist: (settle: Settle) => () => void,
): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const onAbort = () => settle(signal?.reason);
  let delist = () => {};
  const settle: Settle = (error) => {
    delist();
    signal?.removeEventListener("abort", onAbort);
    if (error === undefined) resolve();
    else reject(error);
  };
  delist = enlist(settle);
  signal?.addEventListener("abort", onAbort);
  return promise;
}

const CONFLICT = "Conflict: terminated by other getUpdates request; " +
  "make sure that only one bot instance is running";
const WEBHOOK_ACTIVE = "Conflict: can't use getUpdates method while webhook is active; " +
  "use deleteWebhook to delete the webhook first";
const DEFAULT_MAX_CONNECTIONS = 40;
const MAX_CONNECTIONS = 100;
/** A webhook as `setWebhook` set it. */
type WebhookSettings = Required<Omit<SetWebhookOptions, "allowedUpdates">> & { url: string };
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
  /** Pushed updates not yet confirmed or acknowledged, by id, in id order. */
  #unconfirmed = new Map<number, Pending>();
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
  #webhookTimeout: number;
  #webhookRetryUnit: number;
  #onWebhookResult: ((result: WebhookResult) => void) | undefined;
  #webhookRandom: () => number;
  /** What `setWebhook` set, or `undefined` while no webhook is set. */
  #webhook: WebhookSettings | undefined;
  /** Posts the updates while a webhook is set. */
  #delivery: WebhookDelivery | undefined;
  /** Webhook changes, one after another (each waits for the previous delivery to end). */
  #webhookChange: Promise<unknown> = Promise.resolve();
  #webhookCounts = {
    delivered: 0,
    retried: 0,
    acknowledged: 0,
    rejected: 0,
    timedOut: 0,
    dropped: 0,
    maxInFlight: 0,
  };
  #lastWebhookError: { date: number; message: string } | undefined;
  #acknowledgedWaiters = new Set<Settle>();

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
      "webhookTimeout",
      "webhookRetryUnit",
      "onWebhookResult",
    ]);
    const {
      token = "123456:TEST-fake-token",
      seed = 1,
      faults = {},
      sendMessageLatency = 0,
      firstUpdateId = 1,
      webhookTimeout = 60_000,
      webhookRetryUnit = 1_000,
      onWebhookResult,
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
    check(context, "webhookTimeout", webhookTimeout, "a positive duration");
    check(context, "webhookRetryUnit", webhookRetryUnit, "a positive duration");
    if (onWebhookResult !== undefined && typeof onWebhookResult !== "function") {
      throw new TypeError(
        `${context} as 'onWebhookResult' must be a function: current value is ${
          show(onWebhookResult)
        }`,
      );
    }
    this.#webhookTimeout = webhookTimeout;
    this.#webhookRetryUnit = webhookRetryUnit;
    this.#onWebhookResult = onWebhookResult;
    this.#webhookRandom = seededRandom(seed ^ 0x2545f491);
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
    return this.#unconfirmed.size;
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
    return waitUntilSettled(signal, (settle) => {
      const waiter: Waiter = { offset, settle };
      this.#waiters.add(waiter);
      return () => this.#waiters.delete(waiter);
    });
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
   * Sets a webhook, as the Bot API's `setWebhook` does: from now on the
   * updates not yet confirmed, and those pushed later, are POSTed as JSON to
   * `url` like Telegram's Bot API server sends them. Each chat (each sender
   * for callback and inline queries) has its own queue, whose next update
   * goes out only once the previous one was answered with a 2xx status; at
   * most `maxConnections` requests are open; an update answered otherwise,
   * unanswered after `webhookTimeout`, or whose connection failed, is sent
   * again after a backoff while the rest of its queue waits. Like a Bot API
   * server started with `--local`, it takes `http:` URLs and any port.
   * While a webhook is set, `getUpdates` fails with 409.
   *
   * @example
   * ```ts
   * import { Bot, webhookCallback } from "grammy";
   * import { FakeBotApi } from "@grammyx/runner/testing";
   * import assert from "node:assert/strict";
   *
   * await using api = await FakeBotApi.start();
   * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
   * bot.on("message:text", (ctx) => ctx.reply(ctx.msg.text.toUpperCase()));
   * const handler = webhookCallback(bot, "std/http", { secretToken: "s3cret" });
   * // Pass the request on: Deno.serve gives none to a handler declared without parameters.
   * const serving = { hostname: "127.0.0.1", port: 0, onListen() {} };
   * await using server = Deno.serve(serving, (request) => handler(request));
   * await bot.api.setWebhook(`http://127.0.0.1:${server.addr.port}/`, { secret_token: "s3cret" });
   * api.pushMessages(2, { chats: 1, text: (index) => `hi ${index}` });
   * await api.whenAcknowledged();
   * assert.deepEqual(api.sentMessages.map((m) => m.text), ["HI 0", "HI 1"]);
   * ```
   *
   * @param url Where to post updates: an `http:` or `https:` URL.
   * @param options Secret token, connection bound and what to drop (default: `{}`).
   * @returns A promise that resolves once the webhook is set (and the previous one stopped).
   * @throws {TypeError | RangeError} If `url` or an option has the wrong type or range, or an option is unknown.
   */
  setWebhook(url: string, options?: SetWebhookOptions): Promise<void> {
    const context = "Cannot set the webhook";
    optionalObject(context, "options", options);
    knownOptions(context, options, [
      "secretToken",
      "maxConnections",
      "dropPendingUpdates",
      "allowedUpdates",
    ]);
    const {
      secretToken = "",
      maxConnections = DEFAULT_MAX_CONNECTIONS,
      dropPendingUpdates = false,
      allowedUpdates,
    } = options ?? {};
    const href = typeof url === "string" ? webhookUrl(url) : undefined;
    if (href === undefined) {
      throw new TypeError(
        `${context} as 'url' must be an http or https URL: current value is ${show(url)}`,
      );
    }
    if (typeof secretToken !== "string" || !/^[A-Za-z0-9_-]{0,256}$/.test(secretToken)) {
      // A secret: describe the value rather than print it.
      const value = typeof secretToken === "string" ? "another string" : show(secretToken);
      throw new TypeError(
        `${context} as 'secretToken' must be at most 256 of A-Z, a-z, 0-9, _ and -: current value is ${value}`,
      );
    }
    check(context, "maxConnections", maxConnections, "an integer from 1 to 100");
    checkBoolean(context, "dropPendingUpdates", dropPendingUpdates);
    if (
      allowedUpdates !== undefined &&
      (!Array.isArray(allowedUpdates) || !allowedUpdates.every((t) => typeof t === "string"))
    ) {
      throw new TypeError(
        `${context} as 'allowedUpdates' must be an array of update types: current value is ${
          show(allowedUpdates)
        }`,
      );
    }
    if (allowedUpdates !== undefined) this.#allowedUpdates = [...allowedUpdates];
    const webhook = { url: href, secretToken, maxConnections, dropPendingUpdates };
    return this.#changeWebhook(webhook, dropPendingUpdates).then(() => {});
  }

  /**
   * Deletes the webhook, as the Bot API's `deleteWebhook` does: requests
   * still open are abandoned (their updates stay pending) and `getUpdates`
   * works again.
   *
   * @example
   * ```ts
   * import { Bot } from "grammy";
   * import { FakeBotApi } from "@grammyx/runner/testing";
   * import assert from "node:assert/strict";
   *
   * await using api = await FakeBotApi.start();
   * const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
   * await api.setWebhook("http://127.0.0.1:9/nobody-listens", { dropPendingUpdates: true });
   * await assert.rejects(bot.api.getUpdates(), /409/);
   * await api.deleteWebhook();
   * const [id] = api.pushMessages(1);
   * assert.deepEqual((await bot.api.getUpdates()).map((u) => u.update_id), [id]);
   * ```
   *
   * @param options `dropPendingUpdates: true` forgets the updates not yet delivered (default: `{}`).
   * @returns A promise that resolves once the webhook's requests have ended.
   * @throws {TypeError} If an option has the wrong type or is unknown.
   */
  deleteWebhook(options?: { dropPendingUpdates?: boolean }): Promise<void> {
    const context = "Cannot delete the webhook";
    optionalObject(context, "options", options);
    knownOptions(context, options, ["dropPendingUpdates"]);
    const { dropPendingUpdates = false } = options ?? {};
    checkBoolean(context, "dropPendingUpdates", dropPendingUpdates);
    return this.#changeWebhook(undefined, dropPendingUpdates).then(() => {});
  }

  /**
   * Tells what the Bot API's `getWebhookInfo` answers: the URL (`""` if no
   * webhook is set), the pending updates, the last error and the connection
   * bound.
   *
   * @returns A new object, a snapshot.
   */
  webhookInfo(): WebhookInfoAnswer {
    const webhook = this.#webhook;
    const info: WebhookInfoAnswer = {
      url: webhook?.url ?? "",
      has_custom_certificate: false,
      pending_update_count: this.#unconfirmed.size,
    };
    if (this.#lastWebhookError !== undefined) {
      info.last_error_date = this.#lastWebhookError.date;
      info.last_error_message = this.#lastWebhookError.message;
    }
    if (webhook !== undefined) {
      info.max_connections = webhook.maxConnections;
      const host = new URL(webhook.url).hostname;
      info.ip_address = /^\d{1,3}(\.\d{1,3}){3}$/.test(host) ? host : "<unknown>";
    }
    if (this.#allowedUpdates !== undefined) {
      info.allowed_updates = [...this.#allowedUpdates] as NonNullable<
        WebhookInfo["allowed_updates"]
      >;
    }
    return info;
  }

  /** Counters of the webhook deliveries so far. @returns A copy, a snapshot. */
  get webhookStats(): FakeWebhookStats {
    const delivery = this.#delivery;
    return {
      ...this.#webhookCounts,
      pending: this.#unconfirmed.size,
      inFlight: delivery?.inFlight ?? 0,
      maxInFlight: Math.max(this.#webhookCounts.maxInFlight, delivery?.maxInFlight ?? 0),
    };
  }

  /**
   * Waits until no pushed update is pending: each was acknowledged by the
   * webhook (or confirmed through `getUpdates`).
   *
   * @example
   * ```ts
   * import { FakeBotApi } from "@grammyx/runner/testing";
   * import assert from "node:assert/strict";
   *
   * const texts: string[] = [];
   * await using receiver = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
   *   texts.push((await request.json()).message.text);
   *   return new Response();
   * });
   * await using api = await FakeBotApi.start();
   * api.pushMessages(3, { chats: 1 });
   * await api.setWebhook(`http://127.0.0.1:${receiver.addr.port}/`);
   * await api.whenAcknowledged();
   * assert.deepEqual(texts, ["message 0", "message 1", "message 2"]);
   * assert.equal(api.webhookStats.acknowledged, 3);
   * ```
   *
   * @param signal Stops the wait, rejecting with its reason.
   * @returns A promise that resolves once nothing is pending.
   * @throws {Error} If the server is closed first.
   */
  whenAcknowledged(signal?: AbortSignal): Promise<void> {
    if (this.#unconfirmed.size === 0) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed) return Promise.reject(closedBeforeAcknowledged());
    return waitUntilSettled(signal, (settle) => {
      this.#acknowledgedWaiters.add(settle);
      return () => this.#acknowledgedWaiters.delete(settle);
    });
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
    for (const settle of this.#acknowledgedWaiters) settle(closedBeforeAcknowledged());
    await this.#webhookChange;
    await this.#stopDelivery();
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

  /**
   * Applies a webhook change after those before it: stops the current
   * delivery, drops pending updates if asked, and starts a delivery of every
   * pending update to the new URL.
   *
   * @returns Telegram's description of what happened.
   */
  #changeWebhook(next: WebhookSettings | undefined, drop: boolean): Promise<string> {
    const change = this.#webhookChange.then(async () => {
      const current = this.#webhook;
      if (!drop && sameWebhook(current, next)) {
        return next ? "Webhook is already set" : "Webhook is already deleted";
      }
      if (next !== undefined) {
        this.#held?.answer(this.#conflict("Conflict: terminated by setWebhook request"));
      }
      this.#webhook = next;
      this.#lastWebhookError = undefined;
      await this.#stopDelivery();
      if (drop) {
        this.#unconfirmed.clear();
        this.#settleAcknowledged();
      }
      if (next !== undefined && !this.#closing.signal.aborted) {
        const settings = {
          timeout: this.#webhookTimeout,
          retryUnit: this.#webhookRetryUnit,
          random: this.#webhookRandom,
        };
        this.#delivery = new WebhookDelivery(
          next,
          settings,
          (result) => this.#onDelivery(result),
        );
        for (const pending of this.#unconfirmed.values()) this.#delivery.add(pending.update);
      }
      if (next !== undefined) return "Webhook was set";
      return current ? "Webhook was deleted" : "Webhook is already deleted";
    });
    this.#webhookChange = change.catch(() => {});
    return change;
  }

  /** Ends the current delivery, keeping its high-water mark of open requests. */
  async #stopDelivery(): Promise<void> {
    const delivery = this.#delivery;
    this.#delivery = undefined;
    if (delivery === undefined) return;
    await delivery.close();
    const counts = this.#webhookCounts;
    counts.maxInFlight = Math.max(counts.maxInFlight, delivery.maxInFlight);
  }

  /** Counts a webhook request, forgets an acknowledged update and runs a method given in reply. */
  #onDelivery(result: DeliveryResult): void {
    const counts = this.#webhookCounts;
    const { update, attempt, outcome, status, milliseconds, error, reply } = result;
    counts.delivered++;
    if (attempt > 1) counts.retried++;
    if (outcome === "acknowledged") {
      counts.acknowledged++;
      this.#unconfirmed.delete(update.update_id);
      this.#runReply(reply);
    } else if (outcome === "rejected") counts.rejected++;
    else if (outcome === "timed out") counts.timedOut++;
    else counts.dropped++;
    if (error !== undefined) {
      this.#lastWebhookError = { date: Math.floor(Date.now() / 1000), message: error };
    }
    const hook = this.#onWebhookResult;
    if (hook !== undefined) {
      const event: WebhookResult = { updateId: update.update_id, attempt, outcome, milliseconds };
      if (status !== undefined) event.status = status;
      try {
        hook(event);
      } catch (error) {
        // Surfaces as an uncaught error, without stopping the delivery.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    this.#settleAcknowledged();
  }

  /** Runs a method that a webhook answer carries, as Telegram does with webhook replies. */
  #runReply(reply: unknown): void {
    if (typeof reply !== "object" || reply === null || Array.isArray(reply)) return;
    const { method, ...params } = reply as Record<string, unknown>;
    if (typeof method !== "string" || method === "") return;
    const name = method.toLowerCase();
    if (["setwebhook", "deletewebhook", "close", "logout"].includes(name)) return;
    if (name.startsWith("get")) return;
    this.#count(method);
    void this.#call(method, params);
  }

  #settleAcknowledged(): void {
    if (this.#unconfirmed.size > 0) return;
    for (const settle of this.#acknowledgedWaiters) settle();
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
    this.#count(method);
    const params = await unlessAborted(readParams(url, incoming), this.#closing.signal);
    if (params === CLOSING) return respond(closingFailure());
    if (params === undefined) {
      return respond(failure(400, "Bad Request: cannot parse the parameters"));
    }
    return await this.#call(method, params);
  }

  #count(method: string): void {
    this.#requests.set(method, (this.#requests.get(method) ?? 0) + 1);
  }

  /** Runs a Bot API method; those the fake does not know answer `true`. */
  async #call(method: string, params: Record<string, unknown>): Promise<Reply> {
    switch (method) {
      case "getUpdates":
        return this.#getUpdates(params);
      case "sendMessage":
        return await this.#sendMessage(params);
      case "getMe":
        return respond(success(this.#me));
      case "setWebhook":
        return await this.#setWebhookCall(params);
      case "deleteWebhook": {
        const drop = readBoolean(params.drop_pending_updates);
        return respond(success(true, await this.#changeWebhook(undefined, drop)));
      }
      case "getWebhookInfo":
        return respond(success(this.webhookInfo()));
      default:
        return respond(success(true));
    }
  }

  /** `setWebhook` over HTTP: Telegram's checks and answers (an empty URL deletes the webhook). */
  async #setWebhookCall(params: Record<string, unknown>): Promise<Reply> {
    const drop = readBoolean(params.drop_pending_updates);
    const url = params.url === undefined ? "" : String(params.url);
    if (url === "") return respond(success(true, await this.#changeWebhook(undefined, drop)));
    const href = webhookUrl(url);
    if (href === undefined) {
      return respond(failure(400, "Bad Request: invalid webhook URL specified"));
    }
    const secretToken = params.secret_token === undefined ? "" : String(params.secret_token);
    if (secretToken.length > 256) {
      return respond(failure(400, "Bad Request: secret token is too long"));
    }
    if (!/^[A-Za-z0-9_-]*$/.test(secretToken)) {
      return respond(failure(400, "Bad Request: secret token contains unallowed characters"));
    }
    // Telegram clamps max_connections rather than rejecting it.
    const given = params.max_connections === undefined || params.max_connections === ""
      ? DEFAULT_MAX_CONNECTIONS
      : Math.trunc(toNumber(params.max_connections, 0));
    const maxConnections = Math.min(Math.max(given, 1), MAX_CONNECTIONS);
    this.#allowedUpdates = readAllowedUpdates(params.allowed_updates) ?? this.#allowedUpdates;
    const webhook = { url: href, secretToken, maxConnections, dropPendingUpdates: drop };
    return respond(success(true, await this.#changeWebhook(webhook, drop)));
  }

  #getUpdates(params: Record<string, unknown>): Reply {
    if (this.#webhook !== undefined) return respond(this.#conflict(WEBHOOK_ACTIVE));
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

  #conflict(description = CONFLICT): Answer {
    this.#counts.getUpdatesErrors++;
    return failure(409, description);
  }

  #confirm(offset: number): void {
    this.#offset = Math.max(this.#offset, offset);
    for (const id of this.#unconfirmed.keys()) {
      if (id >= offset) break;
      this.#unconfirmed.delete(id);
      this.#counts.confirmed++;
    }
    for (const waiter of this.#waiters) {
      if (waiter.offset <= this.#offset) waiter.settle();
    }
  }

  /** Picks the first `limit` unconfirmed updates, or those from the `-offset`th last on. */
  #select(offset: number, limit: number): Pending[] {
    if (offset < 0) {
      const all = [...this.#unconfirmed.values()];
      const start = Math.max(0, all.length + offset);
      return all.slice(start, start + limit);
    }
    const selected: Pending[] = [];
    for (const pending of this.#unconfirmed.values()) {
      if (selected.length === limit) break;
      selected.push(pending);
    }
    return selected;
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
      const pending = { update: { ...update, update_id: id }, delivered: false };
      this.#unconfirmed.set(id, pending);
      this.#enqueuedAt.push(now);
      this.#delivery?.add(pending.update);
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

function success(result: unknown, description?: string): Answer {
  return description === undefined ? { ok: true, result } : { ok: true, result, description };
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
  "a positive duration": (n: number) => n > 0 && n <= 2 ** 31 - 1,
  "an integer from 1 to 100": (n: number) => Number.isSafeInteger(n) && n >= 1 && n <= 100,
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

function closedBeforeAcknowledged(): Error {
  return new Error("Cannot wait for acknowledgements as the fake Bot API was closed");
}

/** @throws {TypeError} If `value` is not a boolean. */
function checkBoolean(context: string, name: string, value: unknown): void {
  if (typeof value !== "boolean") {
    throw new TypeError(
      `${context} as '${name}' must be a boolean: current value is ${show(value)}`,
    );
  }
}

/** A boolean parameter as Telegram reads it: `true`, `"true"` or `"1"`. */
function readBoolean(value: unknown): boolean {
  return value === true || value === 1 || value === "true" || value === "1";
}

/**
 * A webhook URL as Telegram takes it (https if no scheme is given), or
 * `undefined` if it is not an http or https URL with a host.
 */
function webhookUrl(url: string): string | undefined {
  if (/\s/.test(url)) return undefined;
  const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url) ? url : `https://${url}`;
  try {
    const parsed = new URL(withScheme);
    const web = parsed.protocol === "http:" || parsed.protocol === "https:";
    return web && parsed.hostname !== "" ? parsed.href : undefined;
  } catch {
    return undefined;
  }
}

/** Whether two webhooks are the same, so that setting one again changes nothing. */
function sameWebhook(a: WebhookSettings | undefined, b: WebhookSettings | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.url === b.url && a.secretToken === b.secretToken &&
    a.maxConnections === b.maxConnections;
}
