/**
 * `deno task --cwd bench kv-queue`: end-to-end throughput of the webhook path
 * on one Deno KV file: updates POSTed over real HTTP to `webhookToKv` (over
 * `connections` connections, each chat's updates in order on one, as
 * Telegram sends them), run by `runFromKv` workers in this process (each its
 * own KV handle, as isolates would be) with handlers that await
 * `handler-ms`. It prints the throughput (first POST to last update handled),
 * the ingress response time, duplicates, per-chat order violations and lost
 * session writes, next to the bare atomic commit rate of a KV file measured
 * in the same run (`kv_limit.ts`), and their ratio.
 *
 * ```sh
 * deno task --cwd bench kv-queue
 * deno task --cwd bench kv-queue --updates=2000 --chats=200 --workers=2 --handler-ms=20
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runFromKv, webhookToKv } from "@grammyx/runner/kv_queue";
import { removeKvFiles } from "./_kv.ts";
import { commitRate } from "./kv_limit.ts";
import { percentile } from "./_stats.ts";

const { values } = parseArgs({
  options: {
    updates: { type: "string", default: "3000" },
    chats: { type: "string", default: "300" },
    workers: { type: "string", default: "1" },
    connections: { type: "string", default: "40" },
    "handler-ms": { type: "string", default: "20" },
  },
});
const updates = Number(values.updates);
const chats = Number(values.chats);
const workers = Number(values.workers);
const connections = Number(values.connections);
const handlerMs = Number(values["handler-ms"]);

const path = `/tmp/grammyx-kv-queue-${crypto.randomUUID()}.kv`;
const ingressKv = await Deno.openKv(path);
const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: () => {} },
  webhookToKv(ingressKv),
);
const url = `http://127.0.0.1:${server.addr.port}/`;

/** Per chat: the update ids handled, in order; and a session counter read and written around the work. */
const perChat = new Map<number, number[]>();
const sessions = new Map<number, number>();
let handled = 0;
let lastHandledAt = 0;
const kvs: Deno.Kv[] = [];
const handles = [];
for (let index = 0; index < workers; index++) {
  const kv = await Deno.openKv(path);
  kvs.push(kv);
  const bot = {
    handleUpdate: async (update: { update_id: number; message?: { chat: { id: number } } }) => {
      const chat = update.message!.chat.id;
      const before = sessions.get(chat) ?? 0;
      await new Promise((resolve) => setTimeout(resolve, handlerMs));
      sessions.set(chat, before + 1);
      const ids = perChat.get(chat) ?? [];
      ids.push(update.update_id);
      perChat.set(chat, ids);
      handled++;
      lastHandledAt = performance.now();
    },
    errorHandler: () => {},
  };
  handles.push(runFromKv(bot, kv, { concurrency: 500, pollMilliseconds: 50 }));
}

const latencies: number[] = [];
const byConnection = Array.from({ length: connections }, () => [] as [number, number][]);
for (let id = 1; id <= updates; id++) {
  const chat = 1 + ((id * 7919) % chats);
  byConnection[chat % connections]!.push([id, chat]);
}
const start = performance.now();
await Promise.all(byConnection.map(async (list) => {
  for (const [id, chat] of list) {
    const body = JSON.stringify({
      update_id: id,
      message: {
        message_id: id,
        date: 0,
        chat: { id: chat, type: "private" },
        from: { id: chat },
        text: "hi",
      },
    });
    for (;;) {
      const sent = performance.now();
      const response = await fetch(url, { method: "POST", body });
      await response.body?.cancel();
      latencies.push(performance.now() - sent);
      if (response.ok) break;
    }
  }
}));
const postedAt = performance.now();
while (handled < updates) await new Promise((resolve) => setTimeout(resolve, 5));
const seconds = (lastHandledAt - start) / 1_000;
await Promise.all(handles.map((handle) => handle.stop()));
await server.shutdown();
for (const kv of [...kvs, ingressKv]) kv.close();
removeKvFiles(path);

let violations = 0;
let lost = 0;
for (const [chat, ids] of perChat) {
  for (let i = 1; i < ids.length; i++) if (ids[i]! <= ids[i - 1]!) violations++;
  if (sessions.get(chat) !== ids.length) lost++;
}
const duplicates = handled - new Set([...perChat.values()].flat()).size;
latencies.sort((a, b) => a - b);
const limit = await commitRate(40, 3);
const rate = updates / seconds;
console.log(
  `${updates} updates, ${chats} chats, ${workers} worker(s) in process, ${connections} connections, ${handlerMs} ms handlers`,
);
console.log(
  "| row | updates/s | ingress p50 | ingress p99 | offered/s | duplicates | order violations | lost session writes |",
);
console.log("| --- | --: | --: | --: | --: | --: | --: | --: |");
console.log(
  `| webhookToKv → runFromKv | ${Math.round(rate)} | ${
    percentile(latencies, 0.5).toFixed(1)
  } ms | ${percentile(latencies, 0.99).toFixed(1)} ms | ${
    Math.round(updates / ((postedAt - start) / 1_000))
  } | ${duplicates} | ${violations} | ${lost} |`,
);
console.log(
  `| limit: atomic commits/s, 40 writers, same kind of file | ${Math.round(limit)} | | | | | | |`,
);
console.log(`end-to-end / limit = ${(rate / limit).toFixed(2)}`);
