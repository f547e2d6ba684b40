// Registers the webhook of examples/deploy/main.ts with Telegram: the URL,
// the secret token Telegram sends back in every request (checked by
// webhookToKv), and how many requests Telegram may have open at once.
// Needs a real token.
//
//   BOT_TOKEN=... WEBHOOK_SECRET=... deno run -A examples/deploy/set_webhook.ts https://<your-app>/
//   BOT_TOKEN=... deno run -A examples/deploy/set_webhook.ts --delete   (back to long polling)

import { Bot } from "grammy";

const token = Deno.env.get("BOT_TOKEN");
if (token === undefined) throw new Error("Set BOT_TOKEN");
const bot = new Bot(token);
const [url] = Deno.args;

if (url === "--delete") {
  await bot.api.deleteWebhook();
} else {
  const secretToken = Deno.env.get("WEBHOOK_SECRET");
  if (url === undefined || secretToken === undefined) {
    throw new Error("Usage: WEBHOOK_SECRET=... set_webhook.ts https://<your-app>/");
  }
  await bot.api.setWebhook(url, {
    secret_token: secretToken,
    // Telegram's default is 40; each chat still gets one request at a time.
    max_connections: 40,
  });
}
const info = await bot.api.getWebhookInfo();
console.log(
  `Webhook: ${info.url || "(none)"}; pending updates: ${info.pending_update_count}; ` +
    `max connections: ${info.max_connections ?? "-"}; last error: ${
      info.last_error_message ?? "none"
    }`,
);
