/**
 * One bot of the kill loop (`_crash_harness.ts`, run by the crash scenario
 * and the crash tests), in a process the harness kills with SIGKILL and
 * starts again. It runs the subject's runner with the spec's handler, which
 * sends the update id back with `sendMessage` after its work: what the fake
 * server received is the record of what was handled.
 * On SIGTERM it stops the way the subject's users would (`await
 * handle.stop()`) and exits 0. The only argument is a `CrashSpec` as JSON;
 * `--remove <path>` instead removes a journal's KV files, for the harness,
 * whose process may not write to /tmp.
 *
 * ```sh
 * deno run --unstable-kv --allow-net=127.0.0.1 --allow-env --allow-read --allow-write=/tmp \
 *   bench/crash_subject.ts '{"subject":"grammyx-handled","apiRoot":...}'
 * ```
 *
 * @module
 */

import type { Context } from "grammy";
import { removeKvFiles } from "./_kv.ts";
import { type CrashSpec, delayFor } from "./_protocol.ts";
import { isSubjectName, SUBJECTS } from "./_subjects.ts";
import type { Driver } from "./subjects/_driver.ts";

async function driverFor(spec: CrashSpec): Promise<Driver> {
  if (spec.subject === "grammyx-journal") {
    if (spec.journalPath === undefined) throw new TypeError("grammyx-journal needs a journalPath");
    return await (await import("./subjects/grammyx.ts")).grammyxJournal(spec.journalPath);
  }
  if (!isSubjectName(spec.subject)) throw new TypeError(`Unknown subject '${spec.subject}'`);
  return await SUBJECTS[spec.subject].load();
}

async function main(spec: CrashSpec): Promise<void> {
  // grammY loads only here: removing files needs no environment access.
  const { Bot } = await import("grammy");
  const driver = await driverFor(spec);
  const bot = new Bot(spec.token, { client: { apiRoot: spec.apiRoot } });
  if (spec.sequentialize && driver.sequentialize) {
    bot.use(driver.sequentialize((ctx: Context) => ctx.chat?.id.toString()));
  }
  const delay = delayFor(spec.handler);
  bot.on("message", async (ctx) => {
    const id = ctx.update.update_id;
    await new Promise((resolve) => setTimeout(resolve, delay(id, ctx.chat.id)));
    await ctx.api.sendMessage(ctx.chat.id, String(id));
  });
  bot.catch((error) => console.error(`Handler failed: ${String(error.error).slice(0, 300)}`));
  await bot.init();

  const { concurrency, maxPending } = spec;
  const running = driver.start(bot, {
    concurrency,
    ...(maxPending === undefined ? {} : { maxPending }),
  });
  let stopping = false;
  Deno.addSignalListener("SIGTERM", async () => {
    stopping = true;
    await running.stop();
    Deno.exit(0);
  });
  try {
    await running.ended;
  } catch (error) {
    console.error(`The runner failed: ${error}`);
    Deno.exit(1);
  }
  if (!stopping) {
    console.error("The runner ended by itself");
    Deno.exit(1);
  }
}

if (Deno.args[0] === "--remove") {
  if (Deno.args[1] !== undefined) removeKvFiles(Deno.args[1]);
} else {
  await main(JSON.parse(Deno.args[0] ?? "{}") as CrashSpec);
}
