/**
 * `deno task --cwd bench redis`: one process with `run()` against a poller
 * and worker processes over Redis Streams (`forward()` → `redisQueue()` →
 * `runFrom()`), side by side, on one fake Bot API in this process and one
 * redis-server this script starts (AOF on, fsync every second).
 *
 * - cpu: every handler burns 2 ms of CPU, 1 000 chats: `run()` vs poller +
 *   2 workers (target ≥ 1.6×, per-chat order kept);
 * - io: every handler awaits 20 ms: `run()` vs poller + 1 worker (target
 *   ≥ 0.9×: the hop costs little);
 * - Redis commands per update (INFO's total_commands_processed);
 * - hop latency: updates pushed one at a time (200/s), handlers of 1 ms:
 *   from the push to the handler's start, p50/p99, `run()` vs the fleet.
 *
 * Updates are pushed once every process is ready, so start-up is not
 * counted. Prints a table and one JSON line.
 *
 * ```sh
 * deno task --cwd bench redis
 * deno task --cwd bench redis --cpu-updates=2000 --io-updates=5000
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { FakeBotApi } from "@grammyx/runner/testing";
import { createClient } from "../_redis_deps.ts";
import { REDIS_SERVER, RedisServer } from "../tests/_redis.ts";

const { values } = parseArgs({
  options: {
    "cpu-updates": { type: "string", default: "4000" },
    "cpu-workers": { type: "string", default: "2" },
    "io-updates": { type: "string", default: "20000" },
    chats: { type: "string", default: "1000" },
    burn: { type: "string", default: "2" },
    "io-ms": { type: "string", default: "20" },
    "latency-updates": { type: "string", default: "400" },
  },
});
const cpuUpdates = Number(values["cpu-updates"]);
const cpuWorkers = Number(values["cpu-workers"]);
const ioUpdates = Number(values["io-updates"]);
const chats = Number(values.chats);
const burn = Number(values.burn);
const ioMs = Number(values["io-ms"]);
const latencyUpdates = Number(values["latency-updates"]);

if (REDIS_SERVER === undefined) {
  console.error("The Redis bench needs redis-server (apt-get install redis-server)");
  Deno.exit(2);
}

const SUBJECT = new URL("_redis_subject.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

type Role = "run" | "poller" | "worker";

/** A bot process; resolves `ready` once it runs. */
function spawn(role: Role, api: FakeBotApi, redisUrl: string, kind: string, ms: number) {
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      `--config=${CONFIG}`,
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      SUBJECT,
      role,
      api.apiRoot,
      api.token,
      redisUrl,
      kind,
      String(ms),
    ],
    env: { NO_COLOR: "1", NODE_OPTIONS: "--no-warnings" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const { promise: ready, resolve } = Promise.withResolvers<void>();
  const { promise: stopped, resolve: done } = Promise.withResolvers<void>();
  (async () => {
    let text = "";
    for await (const chunk of process.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("ready\n")) resolve();
      if (text.includes("stopped\n")) done();
    }
    done();
  })();
  return {
    ready,
    pid: process.pid,
    async stop() {
      process.kill("SIGTERM");
      await stopped;
      await process.status;
    },
  };
}

interface Trial {
  perSecond: number;
  seconds: number;
  duplicates: number;
  orderViolations: number;
  commandsPerUpdate: number | undefined;
  scriptsPerUpdate: number | undefined;
  latencyP50: number;
  latencyP99: number;
  /** CPU ms per update of each bot process (run, or poller then workers), and of redis-server. */
  cpuPerUpdate: number[];
  redisCpuPerUpdate: number;
}

/**
 * CPU time of a process so far, in ms (Linux /proc, read with `cat`: Deno
 * asks for --allow-all to read /proc itself; 0 elsewhere).
 */
async function cpuMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  try {
    const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`] }).output();
    const fields = new TextDecoder().decode(stdout).split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, 100 ticks/s
  } catch {
    return 0;
  }
}

/** Commands Redis ran (those inside scripts included), and script calls (round trips). */
async function commandsProcessed(url: string): Promise<{ commands: number; scripts: number }> {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  try {
    const info = String(await client.sendCommand(["INFO", "all"]));
    const calls = (name: string) =>
      Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
    return {
      commands: Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? 0),
      scripts: calls("evalsha") + calls("eval"),
    };
  } finally {
    client.destroy();
  }
}

/**
 * One trial: `run()` alone, or a poller and `workers` workers over a fresh
 * Redis; `count` updates over `chatCount` chats, pushed at once or, with
 * `paceMs`, one every `paceMs` ms.
 */
async function trial(
  fleet: number | undefined,
  kind: "cpu" | "io",
  ms: number,
  count: number,
  chatCount: number,
  paceMs = 0,
): Promise<Trial> {
  await using api = await FakeBotApi.start({ seed: 5 });
  await using server = await RedisServer.start({ aof: true, appendfsync: "everysec" });
  const roles: Role[] = fleet === undefined
    ? ["run"]
    : ["poller", ...Array.from({ length: fleet }, () => "worker" as const)];
  const children = roles.map((role) => spawn(role, api, server.url, kind, ms));
  await Promise.all(children.map((child) => child.ready));
  const before = fleet === undefined ? undefined : await commandsProcessed(server.url);
  const cpuBefore = await Promise.all(children.map((child) => cpuMs(child.pid)));
  const redisCpuBefore = await cpuMs(server.pid);
  const start = performance.now();
  if (paceMs === 0) api.pushMessages(count, { chats: chatCount });
  else {
    for (let i = 0; i < count; i++) {
      api.pushMessages(1, { chatOf: () => 1 + (i % chatCount) });
      await new Promise((resolve) => setTimeout(resolve, paceMs));
    }
  }
  const seen = new Set<string>();
  let read = 0;
  while (seen.size < count) {
    const sent = api.sentMessages;
    for (; read < sent.length; read++) seen.add(sent[read]!.text.split(" ")[0]!);
    if (seen.size < count) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const seconds = (performance.now() - start) / 1000;
  const after = fleet === undefined ? undefined : await commandsProcessed(server.url);
  const cpuAfter = await Promise.all(children.map((child) => cpuMs(child.pid)));
  const cpuPerUpdate = cpuAfter.map((ms, i) => (ms - cpuBefore[i]!) / count);
  const redisCpuPerUpdate = (await cpuMs(server.pid) - redisCpuBefore) / count;
  await Promise.all(children.map((child) => child.stop()));

  const firstSeen = new Set<number>();
  const lastPerChat = new Map<string, number>();
  const latencies: number[] = [];
  let duplicates = 0;
  let orderViolations = 0;
  for (const { chat_id, text } of api.sentMessages) {
    const [idText, startedText] = text.split(" ");
    const id = Number(idText);
    if (firstSeen.has(id)) {
      duplicates++;
      continue;
    }
    firstSeen.add(id);
    const chat = String(chat_id);
    if ((lastPerChat.get(chat) ?? -1) > id) orderViolations++;
    lastPerChat.set(chat, id);
    latencies.push(Number(startedText) - api.enqueuedAt(id)!);
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return {
    perSecond: count / seconds,
    seconds,
    duplicates,
    orderViolations,
    // INFO itself counts once.
    commandsPerUpdate: after && before ? (after.commands - before.commands - 1) / count : undefined,
    scriptsPerUpdate: after && before ? (after.scripts - before.scripts) / count : undefined,
    latencyP50: at(0.5),
    latencyP99: at(0.99),
    cpuPerUpdate,
    redisCpuPerUpdate,
  };
}

const rate = (trial: Trial) => `${Math.round(trial.perSecond).toLocaleString("en")}/s`;
const cpu = (trial: Trial) =>
  `CPU/update ${trial.cpuPerUpdate.map((ms) => ms.toFixed(2)).join(" + ")} ms${
    trial.cpuPerUpdate.length > 1
      ? ` (poller + workers), redis ${trial.redisCpuPerUpdate.toFixed(2)} ms`
      : ""
  }`;
const order = (trial: Trial) =>
  `${trial.orderViolations} order violations, ${trial.duplicates} duplicates`;
const redis = (trial: Trial) =>
  `${trial.commandsPerUpdate!.toFixed(1)} Redis commands (${
    trial.scriptsPerUpdate!.toFixed(2)
  } script calls) per update`;

console.log(
  `Redis bench: cpu ${cpuUpdates} updates × ${burn} ms CPU over ${chats} chats; io ${ioUpdates} × ${ioMs} ms; latency ${latencyUpdates} paced`,
);
const cpuRun = await trial(undefined, "cpu", burn, cpuUpdates, chats);
const cpuFleet = await trial(cpuWorkers, "cpu", burn, cpuUpdates, chats);
const ioRun = await trial(undefined, "io", ioMs, ioUpdates, chats);
const ioFleet = await trial(1, "io", ioMs, ioUpdates, chats);
const latencyRun = await trial(undefined, "io", 1, latencyUpdates, 100, 5);
const latencyFleet = await trial(1, "io", 1, latencyUpdates, 100, 5);

const cpuRatio = cpuFleet.perSecond / cpuRun.perSecond;
const ioRatio = ioFleet.perSecond / ioRun.perSecond;
const rows = [
  ["cpu: run() in one process", rate(cpuRun), `${order(cpuRun)}; ${cpu(cpuRun)}`],
  [
    `cpu: poller + ${cpuWorkers} workers over Redis`,
    `${rate(cpuFleet)} (${cpuRatio.toFixed(2)}× run(); target ≥ 1.6×)`,
    `${order(cpuFleet)}; ${redis(cpuFleet)}; ${cpu(cpuFleet)}`,
  ],
  ["io: run() in one process", rate(ioRun), `${order(ioRun)}; ${cpu(ioRun)}`],
  [
    "io: poller + 1 worker over Redis",
    `${rate(ioFleet)} (${ioRatio.toFixed(2)}× run(); target ≥ 0.9×)`,
    `${order(ioFleet)}; ${redis(ioFleet)}; ${cpu(ioFleet)}`,
  ],
  [
    "latency: push → handler start, run()",
    `p50 ${latencyRun.latencyP50} ms, p99 ${latencyRun.latencyP99} ms`,
    "",
  ],
  [
    "latency: push → handler start, over Redis",
    `p50 ${latencyFleet.latencyP50} ms, p99 ${latencyFleet.latencyP99} ms`,
    `hop adds p50 ${latencyFleet.latencyP50 - latencyRun.latencyP50} ms, p99 ${
      latencyFleet.latencyP99 - latencyRun.latencyP99
    } ms; ${redis(latencyFleet)}`,
  ],
];
const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)));
for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  "));
console.log(JSON.stringify({
  cpu: { run: cpuRun, fleet: cpuFleet, ratio: cpuRatio },
  io: { run: ioRun, fleet: ioFleet, ratio: ioRatio },
  latency: { run: latencyRun, fleet: latencyFleet },
}));
