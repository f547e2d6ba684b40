// Delivers updates to a webhook the way Telegram's Bot API server does
// (tdlib/telegram-bot-api, WebhookActor.cpp): one queue per chat whose next
// update goes out only after the previous one was answered with 2xx, at most
// `max_connections` requests open, at most twice that many queues loaded, and
// a failed update sent again after a doubling delay while its queue waits.
// Used by testing.ts (FakeBotApi); not exported by mod.ts.

import { Queue } from "./_async.ts";
import type { Update } from "./_deps.ts";

/** Where and how updates are posted: what `setWebhook` set. */
export interface WebhookTarget {
  url: string;
  /** Sent in `X-Telegram-Bot-Api-Secret-Token` unless empty. */
  secretToken: string;
  maxConnections: number;
}

/** How deliveries are timed. */
export interface DeliverySettings {
  /** Milliseconds after which an unanswered request counts as failed. */
  timeout: number;
  /** Milliseconds of Telegram's backoff unit, one second there. */
  retryUnit: number;
  /** Seeded generator for the random cap of the backoff. */
  random: () => number;
}

/** How one request of a delivery ended. */
export type WebhookOutcome = "acknowledged" | "rejected" | "timed out" | "dropped";

/** One request of a delivery, as `onResult` gets it. */
export interface DeliveryResult {
  update: Update;
  /** 1 for the first request of this update in this delivery, then 2, 3, ... */
  attempt: number;
  outcome: WebhookOutcome;
  /** HTTP status of the answer, if one came. */
  status: number | undefined;
  /** Time from sending the request to the end of its answer (or failure). */
  milliseconds: number;
  /** Telegram's `last_error_message` for a failure. */
  error: string | undefined;
  /** The parsed JSON body of a 2xx answer, if it had one. */
  reply: unknown;
}

interface Entry {
  update: Update;
  attempts: number;
  failures: number;
  /** Backoff state in units, as WebhookActor's `delay_`. */
  delay: number;
}

/** Telegram's cap of a `Retry-After` answer, in seconds. */
const MAX_RETRY_AFTER = 3600;
/** The backoff stops doubling at a random 60..120 units (WEBHOOK_MAX_RESEND_TIMEOUT). */
const MAX_RESEND = 60;

/**
 * One webhook's delivery loop. `add()` queues updates in `update_id` order;
 * `close()` abandons what is open (those updates were not acknowledged) and
 * waits for it to end.
 */
export class WebhookDelivery {
  #target: WebhookTarget;
  #settings: DeliverySettings;
  #onResult: (result: DeliveryResult) => void;
  /** Updates not loaded into a queue yet, in id order (Telegram's tqueue). */
  #backlog = new Queue<Update>();
  /** Chat queues: their first entry is in flight, waiting for its backoff, or ready. */
  #queues = new Map<string, Queue<Entry>>();
  /** Queues whose first entry may be sent now, oldest wake-up first. */
  #ready = new Queue<string>();
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #requests = new Set<Promise<void>>();
  #closing = new AbortController();
  #inFlight = 0;
  #maxInFlight = 0;

  constructor(
    target: WebhookTarget,
    settings: DeliverySettings,
    onResult: (result: DeliveryResult) => void,
  ) {
    this.#target = target;
    this.#settings = settings;
    this.#onResult = onResult;
  }

  /** Requests open now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The most requests that were open at once. */
  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  /** Queues an update, after every update added before. */
  add(update: Update): void {
    if (this.#closing.signal.aborted) return;
    this.#backlog.push(update);
    this.#pump();
  }

  /** Abandons open requests and backoffs, and resolves once every request has ended. */
  async close(): Promise<void> {
    this.#closing.abort();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await Promise.all(this.#requests);
  }

  /** Loads queues and sends what may be sent, as WebhookActor's `loop()`. */
  #pump(): void {
    if (this.#closing.signal.aborted) return;
    const maxLoaded = this.#target.maxConnections * 2;
    while (this.#backlog.length > 0 && this.#queues.size < maxLoaded) {
      const update = this.#backlog.shift()!;
      const key = queueKey(update);
      let queue = this.#queues.get(key);
      if (queue === undefined) {
        queue = new Queue();
        this.#queues.set(key, queue);
        this.#ready.push(key);
      }
      queue.push({ update, attempts: 0, failures: 0, delay: 1 });
    }
    while (this.#inFlight < this.#target.maxConnections && this.#ready.length > 0) {
      const key = this.#ready.shift()!;
      this.#send(key, this.#queues.get(key)!.peek()!);
    }
  }

  #send(key: string, entry: Entry): void {
    this.#inFlight++;
    this.#maxInFlight = Math.max(this.#maxInFlight, this.#inFlight);
    entry.attempts++;
    const request: Promise<void> = this.#post(entry).then((result) => {
      this.#requests.delete(request);
      this.#inFlight--;
      if (result === undefined || this.#closing.signal.aborted) return;
      if (result.outcome === "acknowledged") this.#next(key);
      else this.#retry(key, entry, result.retryAfter);
      this.#onResult(result);
      this.#pump();
    });
    this.#requests.add(request);
  }

  /** Drops the acknowledged first entry of a queue and readies the next. */
  #next(key: string): void {
    const queue = this.#queues.get(key)!;
    queue.shift();
    if (queue.length > 0) this.#ready.push(key);
    else this.#queues.delete(key);
  }

  /** WebhookActor's `on_update_error`: at once the first time, then 2, 4, 8, ... units. */
  #retry(key: string, entry: Entry, retryAfter: number): void {
    let delay = entry.delay;
    let wait = retryAfter;
    if (retryAfter === 0 && entry.failures > 0) {
      const cap = MAX_RESEND + Math.floor(this.#settings.random() * (MAX_RESEND + 1));
      delay = Math.min(cap, entry.delay * 2);
      wait = delay;
    }
    entry.delay = delay;
    entry.failures++;
    if (wait === 0) {
      this.#ready.push(key);
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#ready.push(key);
      this.#pump();
    }, wait * this.#settings.retryUnit);
    this.#timers.add(timer);
  }

  /** Posts one update; `undefined` if the delivery was closed meanwhile. */
  async #post(
    entry: Entry,
  ): Promise<(DeliveryResult & { retryAfter: number }) | undefined> {
    const { url, secretToken } = this.#target;
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (secretToken !== "") headers["x-telegram-bot-api-secret-token"] = secretToken;
    const controller = new AbortController();
    const abort = () => controller.abort();
    this.#closing.signal.addEventListener("abort", abort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#settings.timeout);
    const started = performance.now();
    const result = (
      fields: Partial<DeliveryResult> & { outcome: WebhookOutcome; retryAfter?: number },
    ) => ({
      update: entry.update,
      attempt: entry.attempts,
      status: undefined,
      milliseconds: performance.now() - started,
      error: undefined,
      reply: undefined,
      retryAfter: 0,
      ...fields,
    });
    try {
      const response = await fetch(url, {
        method: "POST",
        headers,
        body: JSON.stringify(entry.update),
        signal: controller.signal,
      });
      const text = await response.text();
      const { status } = response;
      if (status >= 200 && status <= 299) {
        return result({ outcome: "acknowledged", status, reply: parseReply(text) });
      }
      return result({
        outcome: "rejected",
        status,
        error: `Wrong response from the webhook: ${status} ${response.statusText}`.trimEnd(),
        retryAfter: readRetryAfter(response.headers.get("retry-after")),
      });
    } catch {
      if (this.#closing.signal.aborted) return undefined;
      if (timedOut) return result({ outcome: "timed out", error: "Read timeout expired" });
      return result({ outcome: "dropped", error: "Webhook connection closed" });
    } finally {
      clearTimeout(timer);
      this.#closing.signal.removeEventListener("abort", abort);
    }
  }
}

/**
 * The queue Telegram puts an update in (Client.cpp's `webhook_queue_id`):
 * messages by chat, callback and inline queries by sender, each kind apart;
 * an update of another kind is a queue of its own.
 */
export function queueKey(update: Update): string {
  const u = update as Record<string, unknown> & Update;
  const chatOf = (field: unknown) => (field as { chat?: { id?: unknown } } | undefined)?.chat?.id;
  const senderOf = (field: unknown) => (field as { from?: { id?: unknown } } | undefined)?.from?.id;
  const kinds: Array<[string, unknown]> = [
    ["chat", chatOf(u.message ?? u.edited_message ?? u.channel_post ?? u.edited_channel_post)],
    ["inline", senderOf(u.inline_query)],
    ["chosen", senderOf(u.chosen_inline_result)],
    ["callback", senderOf(u.callback_query)],
    ["payment", senderOf(u.shipping_query ?? u.pre_checkout_query)],
    ["my_member", chatOf(u.my_chat_member)],
    ["member", senderOf(u.chat_member ?? u.chat_join_request)],
    ["boost", chatOf(u.chat_boost ?? u.removed_chat_boost)],
    ["reaction", chatOf(u.message_reaction)],
    ["reaction_count", chatOf(u.message_reaction_count)],
    [
      "business",
      chatOf(u.business_message ?? u.edited_business_message ?? u.deleted_business_messages),
    ],
    ["poll", u.poll?.id ?? u.poll_answer?.poll_id],
  ];
  for (const [kind, id] of kinds) {
    if (typeof id === "number" || typeof id === "string") return `${kind}:${id}`;
  }
  return `update:${update.update_id}`;
}

/** The JSON body of a 2xx answer, such as a method call, or `undefined`. */
function parseReply(text: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Seconds of a `Retry-After` header, 0 to 3600; 0 if absent or unreadable. */
function readRetryAfter(value: string | null): number {
  const seconds = Number(value ?? 0);
  if (!Number.isFinite(seconds)) return 0;
  return Math.min(Math.max(Math.trunc(seconds), 0), MAX_RETRY_AFTER);
}
