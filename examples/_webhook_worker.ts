// A worker process of the webhook demo and bench: runs the demo's bot
// (examples/_webhook_bot.ts) with runFromKv() on a KV file, prints "ready",
// and on SIGTERM stops (draining) and exits 0.
//
//   deno run --unstable-kv --allow-net=127.0.0.1 --allow-read --allow-write=/tmp --allow-env \
//     examples/_webhook_worker.ts '{"path":"/tmp/x.kv","apiRoot":"http://127.0.0.1:1","token":"1:x","handlerMs":20}'

import { runFromKv } from "../kv_queue.ts";
import { webhookBot, type WebhookBotSpec } from "./_webhook_bot.ts";

const spec = JSON.parse(Deno.args[0]!) as WebhookBotSpec & { path: string; concurrency?: number };
const kv = await Deno.openKv(spec.path);
const worker = runFromKv(webhookBot(spec, kv), kv, {
  concurrency: spec.concurrency ?? 500,
  reporter: (report) => console.error(`report: ${report.message}`),
});
Deno.addSignalListener("SIGTERM", async () => {
  await worker.stop();
  kv.close();
  Deno.exit(0);
});
console.log("ready");
