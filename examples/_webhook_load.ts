// One webhook load, as the demo (examples/demo_webhook.ts) and the bench
// (bench/webhook.ts) run it: the fake Telegram in webhook mode (per-chat
// queues, 40 connections) pushes messages to either
//   - "queue": webhookToKv() on a KV file in a temp folder, run by `workers`
//     worker processes with runFromKv() (examples/_webhook_worker.ts), or
//   - "inline": grammY's webhookCallback() + sequentialize(), which runs the
//     middleware inside Telegram's request,
// with the same bot (examples/_webhook_bot.ts), then measures and verifies
// what ran: throughput, ingress response time, duplicates, per-chat order,
// lost session writes.

import { webhookCallback } from "grammy";
import { sequentialize } from "../sequentialize.ts";
import { webhookToKv } from "../kv_queue.ts";
import { FakeBotApi } from "../testing.ts";
import { sessionCounts, webhookBot, type WebhookBotSpec } from "./_webhook_bot.ts";

/** The size and shape of a load. */
export interface WebhookLoad {
  /** "queue": webhookToKv → runFromKv workers; "inline": webhookCallback + sequentialize. */
  mode: "queue" | "inline";
  /** Worker processes of the "queue" mode. */
  workers: number;
  /** Updates to push. */
  updates: number;
  /** Hot chats, each with `hotUpdates` of the updates. */
  hot: number;
  hotUpdates: number;
  /** Cold chats that share the rest, at random. */
  chats: number;
  /** Work per update in the handler, ms. */
  handlerMs: number;
  /** `max_connections` of the webhook. */
  maxConnections: number;
  seed: number;
  /** Give up after this long. */
  limitMs: number;
  /** Updates pushed per second, 0 for all at once. @default 0 */
  rate?: number;
}

/** What a load measured. */
export interface WebhookLoadResult {
  /** Distinct updates handled. */
  handled: number;
  /** First push to the last reply, in seconds. */
  seconds: number;
  /** First push to the last reply of a cold chat, in seconds. */
  coldSeconds: number;
  /** Response times of the webhook requests (acknowledged ones), ms, sorted. */
  ingress: number[];
  /** Updates handled more than once (extra runs). */
  duplicates: number;
  /** Replies that came after a reply to a later update of the same chat. */
  violations: number;
  /** Replies minus session counter, summed over chats where it is positive. */
  lostWrites: number;
  /** Webhook requests Telegram had to repeat. */
  retried: number;
  problems: string[];
}

/** Live figures for a progress line. */
export interface WebhookProgress {
  handled: number;
  acknowledged: number;
  inFlight: number;
  elapsedMs: number;
}

/** Runs one load and tears everything down (servers, workers, KV, temp folder). */
export async function runWebhookLoad(
  load: WebhookLoad,
  onProgress?: (progress: WebhookProgress) => void,
): Promise<WebhookLoadResult> {
  const ingress: number[] = [];
  await using api = await FakeBotApi.start({
    seed: load.seed,
    onWebhookResult: (result) => {
      if (result.outcome === "acknowledged") ingress.push(result.milliseconds);
    },
  });
  const dir = await Deno.makeTempDir({ prefix: "grammyx-webhook-" });
  const path = `${dir}/bot.kv`;
  const kv = await Deno.openKv(path);
  const spec: WebhookBotSpec = {
    apiRoot: api.apiRoot,
    token: api.token,
    handlerMs: load.handlerMs,
  };
  const workers: Deno.ChildProcess[] = [];
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  try {
    let handler: (request: Request) => Promise<Response>;
    if (load.mode === "inline") {
      const bot = webhookBot(
        spec,
        kv,
        (bot) => bot.use(sequentialize((ctx) => ctx.chat?.id.toString())),
      );
      handler = webhookCallback(bot, "std/http");
    } else {
      handler = webhookToKv(kv);
      for (let index = 0; index < load.workers; index++) {
        workers.push(await startWorker({ ...spec, path }, dir));
      }
    }
    server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) => handler(request),
    );
    await api.setWebhook(`http://127.0.0.1:${server.addr.port}/`, {
      maxConnections: load.maxConnections,
    });

    const chats = chatList(load);
    const hotChats = new Set(Array.from({ length: load.hot }, (_, index) => index + 1));
    const started = performance.now();
    const rate = load.rate ?? 0;
    let pushed = 0;
    const pushDue = () => {
      const elapsed = performance.now() - started;
      const due = rate > 0
        ? Math.min(chats.length, Math.floor((elapsed * rate) / 1_000) + 1)
        : chats.length;
      if (due <= pushed) return;
      const from = pushed;
      api.pushMessages(due - from, { chatOf: (index) => chats[from + index]! });
      pushed = due;
    };
    pushDue();
    const seen = new Map<number, number>();
    const lastReply = new Map<number, number>();
    let violations = 0;
    let read = 0;
    let lastAt = started;
    let coldAt = started;
    let coldLeft = chats.filter((chat) => !hotChats.has(chat)).length;
    const sent = api.sentMessages;
    let nextProgress = started;
    while (seen.size < chats.length && performance.now() - started < load.limitMs) {
      await new Promise((resolve) => setTimeout(resolve, rate > 0 ? 2 : 10));
      pushDue();
      const now = performance.now();
      for (; read < sent.length; read++) {
        const { chat_id, text } = sent[read]!;
        const id = Number(text);
        const chat = Number(chat_id);
        if ((lastReply.get(chat) ?? 0) > id) violations++;
        lastReply.set(chat, Math.max(lastReply.get(chat) ?? 0, id));
        const count = (seen.get(id) ?? 0) + 1;
        seen.set(id, count);
        if (count === 1) {
          lastAt = now;
          if (!hotChats.has(chat) && --coldLeft === 0) coldAt = now;
        }
      }
      if (onProgress && now >= nextProgress) {
        nextProgress = now + 500;
        const stats = api.webhookStats;
        onProgress({
          handled: seen.size,
          acknowledged: stats.acknowledged,
          inFlight: stats.inFlight,
          elapsedMs: now - started,
        });
      }
    }
    const handled = seen.size;
    // Let Telegram hear the last answers before it is closed.
    await Promise.race([
      api.whenAcknowledged(),
      new Promise((resolve) => setTimeout(resolve, 2_000)),
    ]);
    const stats = api.webhookStats;
    await stopWorkers(workers);
    await server.shutdown();
    server = undefined;
    // Replies that came in while the workers stopped count too.
    for (; read < sent.length; read++) {
      const id = Number(sent[read]!.text);
      seen.set(id, (seen.get(id) ?? 0) + 1);
    }

    const problems: string[] = [];
    const duplicates = [...seen.values()].reduce((sum, count) => sum + count - 1, 0);
    if (handled < chats.length) problems.push(`${chats.length - handled} updates not handled`);
    if (duplicates > 0) problems.push(`${duplicates} duplicate runs`);
    if (violations > 0) problems.push(`${violations} per-chat order violations`);
    const replies = new Map<string, number>();
    for (const { chat_id } of sent) {
      replies.set(String(chat_id), (replies.get(String(chat_id)) ?? 0) + 1);
    }
    const counts = await sessionCounts(kv);
    let lostWrites = 0;
    for (const [chat, count] of replies) lostWrites += Math.max(0, count - (counts.get(chat) ?? 0));
    if (lostWrites > 0) problems.push(`${lostWrites} lost session writes`);
    return {
      handled,
      seconds: (lastAt - started) / 1_000,
      coldSeconds: (coldAt - started) / 1_000,
      ingress: ingress.sort((a, b) => a - b),
      duplicates,
      violations,
      lostWrites,
      retried: stats.retried,
      problems,
    };
  } finally {
    await stopWorkers(workers);
    await server?.shutdown();
    kv.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The chat of each update: hot chats 1..hot get `hotUpdates` each, cold chats the rest, shuffled (seeded). */
function chatList(load: WebhookLoad): number[] {
  let state = load.seed >>> 0 || 1;
  const random = () => {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    return state / 2 ** 32;
  };
  const chats: number[] = [];
  for (let hot = 1; hot <= load.hot; hot++) {
    for (let index = 0; index < load.hotUpdates; index++) chats.push(hot);
  }
  const cold = load.updates - chats.length;
  for (let index = 0; index < cold; index++) chats.push(load.hot + 1 + (index % load.chats));
  for (let index = chats.length - 1; index > 0; index--) {
    const other = Math.floor(random() * (index + 1));
    [chats[index], chats[other]] = [chats[other]!, chats[index]!];
  }
  return chats;
}

/** Starts a worker process and waits for its "ready". */
async function startWorker(
  spec: WebhookBotSpec & { path: string },
  dir: string,
): Promise<Deno.ChildProcess> {
  const script = new URL("./_webhook_worker.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-kv",
      "--allow-net=127.0.0.1",
      "--allow-read",
      `--allow-write=${dir}`,
      "--allow-env",
      script,
      JSON.stringify(spec),
    ],
    env: { NODE_OPTIONS: "--no-warnings", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("ready")) {
    const { done, value } = await lines.read();
    if (done) throw new Error("A worker process ended before it was ready");
    text += value;
  }
  // Keep reading, so that the pipe never fills up and closes with the process.
  void (async () => {
    while (!(await lines.read()).done);
  })().catch(() => {});
  return child;
}

async function stopWorkers(workers: Deno.ChildProcess[]): Promise<void> {
  const running = workers.splice(0);
  for (const child of running) {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already ended.
    }
  }
  await Promise.all(running.map((child) => child.status));
}

/** The value at quantile `q` of sorted `values`, 0 if none. */
export function quantile(values: number[], q: number): number {
  return values[Math.min(values.length - 1, Math.floor(q * values.length))] ?? 0;
}
