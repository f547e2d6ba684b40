// Proves that mod.ts loads by URL with no import map, as from deno.land/x or
// a raw file URL (grammY is named with a full npm: specifier in _deps.ts):
//
//   deno run --no-config --allow-net=127.0.0.1 --allow-env --allow-read \
//     file:///path/to/repo/runtimes/url_import.ts
//
// It runs a bot over the fake Bot API and prints one summary line in deno
// test's shape, which .ci/run adds to the total.

import assert from "node:assert/strict";
import { Bot } from "../_deps.ts";
import { run, sequentialize } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";

let failed = 0;
try {
  const api = await FakeBotApi.start();
  try {
    const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
    const seen: number[] = [];
    bot.use(sequentialize((ctx) => ctx.chat?.id.toString()));
    bot.on("message", (ctx) => void seen.push(ctx.update.update_id));
    const ids = api.pushMessages(50, { chats: 5 });
    const handle = run(bot, { runner: { fetch: { timeout: 1 } } });
    while (seen.length < ids.length) await new Promise((resolve) => setTimeout(resolve, 2));
    await handle.stop();
    assert.deepEqual(seen.toSorted((a, b) => a - b), ids);
    assert.equal(api.pending(), 0);
  } finally {
    await api.close();
  }
  console.log(
    `mod.ts imported by ${import.meta.url.replace(/runtimes\/url_import\.ts$/, "mod.ts")} ... ok`,
  );
} catch (error) {
  failed = 1;
  console.log(`mod.ts imported by file URL without deno.json ... FAILED\n    ${error}`);
}
console.log(
  `${failed ? "FAILED" : "ok"} | ${1 - failed} passed | ${failed} failed (deno --no-config)`,
);
Deno.exitCode = failed;
