/**
 * `deno task --cwd bench webhook`: the webhook path against grammY's
 * `webhookCallback`, side by side in one run, on the fake Telegram's webhook
 * mode (one queue per chat, 40 connections, as Telegram's Bot API server):
 *
 * - `webhookToKv → runFromKv`, 1 and 2 worker processes on one KV file in a
 *   temp folder (the ingress answers once the update is stored);
 * - `webhookCallback + sequentialize`, which runs the middleware inside
 *   Telegram's request (inline).
 *
 * Same bot in every row (examples/_webhook_bot.ts): a session counter per chat
 * in the KV file, read before and written after the handler's work, and a
 * sendMessage with the update id. Two loads: 20 ms handlers (3000 updates, 300
 * cold chats and 3 hot ones with 100 updates each) and 2 s handlers (400
 * updates, 392 cold chats with one each, 2 hot ones with 4 each). Columns:
 * throughput (first push to last reply), when the cold chats were done,
 * ingress response time (each webhook request, from the fake), duplicates,
 * per-chat order violations, lost session writes, requests Telegram repeated.
 * Plus a row offering 300 updates/s to the ingress, and the "limit": the bare
 * atomic commit rate of a KV file (bench/kv_limit.ts).
 *
 * ```sh
 * deno task --cwd bench webhook            # all rows, about 2 minutes
 * deno task --cwd bench webhook --quick    # small loads, indicative only
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { quantile, runWebhookLoad, type WebhookLoad } from "../examples/_webhook_load.ts";
import { commitRate } from "./kv_limit.ts";

const USAGE = "Usage: deno task --cwd bench webhook [--quick]\n" +
  "  --quick  small loads (about 30 s), figures indicative only";
let values: { quick?: boolean };
try {
  ({ values } = parseArgs({ args: Deno.args, options: { quick: { type: "boolean" } } }));
} catch (error) {
  console.error(`${(error as Error).message}\n\n${USAGE}`);
  Deno.exit(2);
}
const quick = values.quick ?? false;

const fast: Omit<WebhookLoad, "mode" | "workers"> = quick
  ? {
    updates: 600,
    chats: 60,
    hot: 3,
    hotUpdates: 20,
    handlerMs: 20,
    maxConnections: 40,
    seed: 1,
    limitMs: 60_000,
  }
  : {
    updates: 3000,
    chats: 300,
    hot: 3,
    hotUpdates: 100,
    handlerMs: 20,
    maxConnections: 40,
    seed: 1,
    limitMs: 120_000,
  };
const slow: Omit<WebhookLoad, "mode" | "workers"> = quick
  ? {
    updates: 100,
    chats: 98,
    hot: 1,
    hotUpdates: 2,
    handlerMs: 2_000,
    maxConnections: 40,
    seed: 1,
    limitMs: 60_000,
  }
  : {
    updates: 400,
    chats: 392,
    hot: 2,
    hotUpdates: 4,
    handlerMs: 2_000,
    maxConnections: 40,
    seed: 1,
    limitMs: 120_000,
  };

const rows: Array<[string, WebhookLoad]> = [];
for (const [label, load] of [["20 ms", fast], ["2 s", slow]] as const) {
  rows.push([`webhookToKv → runFromKv, 1 worker process, ${label}`, {
    ...load,
    mode: "queue",
    workers: 1,
  }]);
  rows.push([`webhookToKv → runFromKv, 2 worker processes, ${label}`, {
    ...load,
    mode: "queue",
    workers: 2,
  }]);
  rows.push([`webhookCallback + sequentialize (inline), ${label}`, {
    ...load,
    mode: "inline",
    workers: 0,
  }]);
}
rows.push([
  "webhookToKv → runFromKv, 2 worker processes, 20 ms, 300 updates/s offered",
  { ...fast, updates: quick ? 600 : 3000, mode: "queue", workers: 2, rate: 300 },
]);

console.log(
  `Fake Telegram in webhook mode (40 connections, a queue per chat); ${Deno.build.os}, ` +
    `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}${
      quick ? "; --quick: indicative only" : ""
    }`,
);
console.log(
  "| row | updates | updates/s | cold chats done | ingress p50 | ingress p99 | duplicates | order violations | lost session writes | repeated by Telegram |",
);
console.log("| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |");
let failed = false;
for (const [label, load] of rows) {
  const result = await runWebhookLoad(load);
  const cells = [
    label,
    `${result.handled}/${load.updates}`,
    String(Math.round(result.handled / result.seconds)),
    `${result.coldSeconds.toFixed(1)} s`,
    `${quantile(result.ingress, 0.5).toFixed(1)} ms`,
    `${quantile(result.ingress, 0.99).toFixed(1)} ms`,
    String(result.duplicates),
    String(result.violations),
    String(result.lostWrites),
    String(result.retried),
  ];
  console.log(`| ${cells.join(" | ")} |`);
  if (result.problems.length > 0) {
    failed = true;
    console.error(`  ${label}: ${result.problems.join("; ")}`);
  }
}
const limit = await commitRate(40, quick ? 1 : 3);
console.log(
  `| limit: bare atomic commits/s of a KV file, 40 writers | | ${
    Math.round(limit)
  } | | | | | | | |`,
);
if (failed) Deno.exit(1);
