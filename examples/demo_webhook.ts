/**
 * `deno task demo:webhook`: the webhook path at work on an embedded fake
 * Telegram, no token needed. The fake sends updates the way Telegram's Bot API
 * server does (one queue per chat, 40 connections) to `webhookToKv()`, which
 * stores them in a Deno KV file in a temp folder and answers at once; two
 * worker processes run them with `runFromKv()`, a session counter per chat in
 * the same KV file. It shows live progress and verifies at the end that every
 * update ran exactly once, in order per chat, with no session write lost.
 *
 * Flags: --updates N (5000) --chats N (500) --hot N (3) --hot-updates N (40)
 * --workers N (2) --handler-ms MS (5) --seed N (1).
 */

import { parseArgs } from "node:util";
import { quantile, runWebhookLoad } from "./_webhook_load.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    updates: { type: "string", default: "5000" },
    chats: { type: "string", default: "500" },
    hot: { type: "string", default: "3" },
    "hot-updates": { type: "string", default: "40" },
    workers: { type: "string", default: "2" },
    "handler-ms": { type: "string", default: "5" },
    seed: { type: "string", default: "1" },
  },
});
const number = (name: keyof typeof values, minimum: number): number => {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < minimum) {
    console.error(
      `Cannot run the demo as '--${name}' must be an integer >= ${minimum}: current value is "${
        values[name]
      }"`,
    );
    Deno.exit(2);
  }
  return value;
};
const load = {
  mode: "queue" as const,
  updates: number("updates", 1),
  chats: number("chats", 1),
  hot: number("hot", 0),
  hotUpdates: number("hot-updates", 0),
  workers: number("workers", 1),
  handlerMs: number("handler-ms", 0),
  seed: number("seed", 0),
  maxConnections: 40,
  limitMs: 55_000,
};
if (load.hot * load.hotUpdates > load.updates) {
  console.error("Cannot run the demo as '--hot' × '--hot-updates' must be at most '--updates'");
  Deno.exit(2);
}
console.log(
  `Fake Telegram (webhook mode, 40 connections, a queue per chat) → webhookToKv → KV file → ` +
    `${load.workers} runFromKv worker processes\n${load.updates} updates over ${load.chats} chats ` +
    `and ${load.hot} hot ones (${load.hotUpdates} updates each), ${load.handlerMs} ms handlers`,
);
const live = Deno.stdout.isTerminal();
const result = await runWebhookLoad(load, (progress) => {
  const line =
    `  ${(progress.elapsedMs / 1000).toFixed(1)} s: handled ${progress.handled}/${load.updates}, ` +
    `acknowledged by the ingress ${progress.acknowledged}, webhook requests open ${progress.inFlight}`;
  if (live) Deno.stdout.writeSync(new TextEncoder().encode(`\r${line}   `));
  else console.log(line);
});
if (live) console.log();
console.log([
  `Handled   ${result.handled} updates in ${result.seconds.toFixed(2)} s (${
    Math.round(result.handled / result.seconds)
  } updates/s)`,
  `Ingress   p50 ${quantile(result.ingress, 0.5).toFixed(1)} ms, p99 ${
    quantile(result.ingress, 0.99).toFixed(1)
  } ms per webhook request; ${result.retried} repeated by Telegram`,
  result.problems.length === 0
    ? "PASS      every update handled exactly once, in order per chat, no session write lost"
    : `FAIL      ${result.problems.join("; ")}`,
].join("\n"));
Deno.exit(result.problems.length === 0 ? 0 : 1);
