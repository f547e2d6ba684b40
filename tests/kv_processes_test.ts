// Worker processes on one KV file, fed by the webhook ingress over real
// HTTP: exactly once without crashes, nothing lost and order kept when
// workers are killed with SIGKILL, and a poison update that kills every
// worker that runs it ends in the dead letters after maxAttempts deaths.

import assert from "node:assert/strict";
import { kvQueue, webhookToKv } from "../kv_queue.ts";
import { FakeBotApi } from "../testing.ts";
import { until } from "./_helpers.ts";
import { kvPath, message } from "./_kv_queue.ts";

const WORKER = new URL("./fixtures/kv_worker.ts", import.meta.url).pathname;

interface WorkerSpec {
  concurrency: number;
  leaseMilliseconds: number;
  pollMilliseconds: number;
  maxWork: number;
}

/** A worker process; its stderr is collected, its stdout lines are watched. */
class Worker {
  readonly process: Deno.ChildProcess;
  readonly lines: string[] = [];
  stderr = "";
  readonly done: Promise<Deno.CommandStatus>;
  /** Its exit status, once it exited. */
  exited: Deno.CommandStatus | undefined;
  #reading: Promise<void>[];

  constructor(path: string, api: FakeBotApi, spec: WorkerSpec) {
    this.process = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--unstable-kv",
        "--allow-net=127.0.0.1",
        "--allow-read",
        "--allow-write=/tmp",
        "--allow-env",
        WORKER,
        JSON.stringify({ path, apiRoot: api.apiRoot, token: api.token, ...spec }),
      ],
      env: { NO_COLOR: "1", NODE_OPTIONS: "--no-warnings" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#reading = [
      this.#read(this.process.stdout, (line) => this.lines.push(line)),
      this.#read(this.process.stderr, (line) => void (this.stderr += line + "\n")),
    ];
    this.done = this.process.status.then(async (status) => {
      await Promise.all(this.#reading);
      this.exited = status;
      return status;
    });
  }

  async #read(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      parts.forEach(onLine);
    }
    if (rest !== "") onLine(rest);
  }

  ready(): Promise<void> {
    return until(() => this.lines.includes("ready"), 30_000, "a worker process to start");
  }

  async kill(): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch {
      // It exited already.
    }
    await this.done;
  }

  async stop(): Promise<Deno.CommandStatus> {
    this.process.kill("SIGTERM");
    return await this.done;
  }
}

/** Posts updates to `url` over `connections` connections; a chat's updates go in order on one. */
async function deliver(
  url: string,
  updates: { id: number; chat: number; text?: string }[],
  connections: number,
) {
  const lanes = Array.from({ length: connections }, () => [] as typeof updates);
  for (const update of updates) lanes[update.chat % connections]!.push(update);
  await Promise.all(lanes.map(async (lane) => {
    for (const { id, chat, text } of lane) {
      for (;;) {
        const response = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(message(id, chat, text)),
        });
        await response.body?.cancel();
        if (response.status === 200) break;
        assert.equal(response.status, 500, `update ${id}`); // Telegram retries a 500
      }
    }
  }));
}

/** The ingress on 127.0.0.1, over the KV file at `path`. */
async function ingress(path: string) {
  const kv = await Deno.openKv(path);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    webhookToKv(kv, { reporter: () => {} }),
  );
  return {
    kv,
    url: `http://127.0.0.1:${server.addr.port}/`,
    async close() {
      await server.shutdown();
      kv.close();
    },
  };
}

/** What the workers sent back, per chat, in arrival order. */
function runsPerChat(api: FakeBotApi): Map<number, number[]> {
  const perChat = new Map<number, number[]>();
  for (const { chat_id, text } of api.sentMessages) {
    const chat = Number(chat_id);
    perChat.set(chat, [...perChat.get(chat) ?? [], Number(text)]);
  }
  return perChat;
}

/** Runs of each update id. */
function runCounts(api: FakeBotApi): Map<number, number> {
  const counts = new Map<number, number>();
  for (const { text } of api.sentMessages) {
    counts.set(Number(text), (counts.get(Number(text)) ?? 0) + 1);
  }
  return counts;
}

/** Updates `count` over `chats` chats, ids from 1. */
function load(count: number, chats: number, seed = 1) {
  let state = seed;
  const next = () => (state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  return Array.from({ length: count }, (_, index) => ({
    id: index + 1,
    chat: 1 + Math.floor(next() * chats),
  }));
}

async function sessionCounts(kv: Deno.Kv): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for await (const entry of kv.list<{ count: number }>({ prefix: ["session"] })) {
    counts.set(Number(entry.key[1]), entry.value.count);
  }
  return counts;
}

// Leases long enough that a write held up by four processes sharing one
// SQLite file (seconds, at worst, here) never outlasts them: a lease that
// expires under a live holder lets another worker run its update again
// (at least once, no longer exactly once).
const SPEC: WorkerSpec = {
  concurrency: 20,
  leaseMilliseconds: 10_000,
  pollMilliseconds: 20,
  maxWork: 4,
};

Deno.test("5 000 updates over 500 chats into 3 worker processes: each once, in order, sessions right", async () => {
  await using api = await FakeBotApi.start();
  const file = kvPath("processes");
  const server = await ingress(file.path);
  const workers = [0, 1, 2].map(() => new Worker(file.path, api, SPEC));
  try {
    await Promise.all(workers.map((worker) => worker.ready()));
    const updates = load(5_000, 500);
    await deliver(server.url, updates, 40);
    await until(() => api.sentMessages.length >= 5_000, 120_000, "5 000 updates handled");
    const statuses = await Promise.all(workers.map((worker) => worker.stop()));
    assert.deepEqual(statuses.map((status) => status.code), [0, 0, 0]);
    const counts = runCounts(api);
    const twice = [...counts].filter(([, runs]) => runs > 1).map(([id]) => id);
    assert.deepEqual(
      twice,
      [],
      `ran twice; stderr: ${workers.map((worker) => worker.stderr).join("\n").slice(0, 3_000)}`,
    );
    assert.equal(counts.size, 5_000);
    assert.ok([...counts.values()].every((runs) => runs === 1), "each update ran once");
    const perChat = runsPerChat(api);
    const sessions = await sessionCounts(server.kv);
    for (const [chat, ids] of perChat) {
      const expected = updates.filter((update) => update.chat === chat).map((update) => update.id);
      assert.deepEqual(ids, expected, `chat ${chat} in update_id order`);
      assert.equal(sessions.get(chat), ids.length, `chat ${chat}'s session counter`);
    }
    assert.deepEqual(await kvQueue(server.kv).counts(), {
      handled: 5_000,
      failed: 0,
      timedOut: 0,
      deadLettered: 0,
    });
    assert.deepEqual(await kvQueue(server.kv).lanes(10), []);
    for (const worker of workers) assert.doesNotMatch(worker.stderr, /report:|Handler failed/);
  } finally {
    await Promise.all(workers.map((worker) => worker.kill()));
    await server.close();
    file.remove();
  }
});

Deno.test("SIGKILL of a worker process mid-load, twice: nothing lost, order kept, duplicates at most in flight", async () => {
  await using api = await FakeBotApi.start();
  const file = kvPath("kill");
  const server = await ingress(file.path);
  const spec = { ...SPEC, leaseMilliseconds: 3_000, maxWork: 10 };
  const workers = [0, 1, 2].map(() => new Worker(file.path, api, spec));
  try {
    await Promise.all(workers.map((worker) => worker.ready()));
    const updates = load(3_000, 300, 2);
    const delivering = deliver(server.url, updates, 40);
    for (const [index, at] of [[0, 800], [1, 1_800]] as const) {
      await until(() => api.sentMessages.length >= at, 120_000, `${at} updates handled`);
      await workers[index]!.kill();
      workers[index] = new Worker(file.path, api, spec); // a restarted worker resumes
      await workers[index]!.ready();
    }
    await delivering;
    const distinct = () => runCounts(api).size;
    await until(() => distinct() >= 3_000, 120_000, "every update handled");
    const statuses = await Promise.all(workers.map((worker) => worker.stop()));
    assert.deepEqual(statuses.map((status) => status.code), [0, 0, 0]);
    const counts = runCounts(api);
    assert.equal(counts.size, 3_000, "nothing lost");
    const duplicates = [...counts.values()].reduce((sum, runs) => sum + runs - 1, 0);
    // At most what the two killed workers had running: `concurrency` each.
    assert.ok(duplicates <= 2 * spec.concurrency, `${duplicates} duplicates`);
    for (const [chat, ids] of runsPerChat(api)) {
      const once = ids.filter((id, index) => index === 0 || id !== ids[index - 1]);
      const expected = updates.filter((update) => update.chat === chat).map((update) => update.id);
      assert.deepEqual(once, expected, `chat ${chat} in update_id order`);
    }
    assert.deepEqual(await kvQueue(server.kv).lanes(10), []);
    assert.equal((await kvQueue(server.kv).counts()).deadLettered, 0);
  } finally {
    await Promise.all(workers.map((worker) => worker.kill()));
    await server.close();
    file.remove();
  }
});

Deno.test("a poison update that kills its worker ends in the dead letters after maxAttempts deaths; its chat goes on", async () => {
  await using api = await FakeBotApi.start();
  const file = kvPath("poison");
  const server = await ingress(file.path);
  const spec = { ...SPEC, leaseMilliseconds: 300, maxWork: 0 };
  let worker = new Worker(file.path, api, spec);
  const deaths: number[] = [];
  try {
    await worker.ready();
    const updates = [
      { id: 1, chat: 1 },
      { id: 2, chat: 1 },
      { id: 3, chat: 1, text: "poison" },
      { id: 4, chat: 1 },
      { id: 5, chat: 1 },
      { id: 6, chat: 2 },
    ];
    await deliver(server.url, updates, 1);
    // Restart the worker each time the poison kills it.
    for (;;) {
      await until(
        () => worker.exited !== undefined || (runCounts(api).has(5) && runCounts(api).has(6)),
        60_000,
        "a worker death or updates 5 and 6",
      );
      if (worker.exited === undefined) break;
      deaths.push(worker.exited.code);
      assert.ok(deaths.length <= 3, `worker died ${deaths.length} times: ${worker.stderr}`);
      worker = new Worker(file.path, api, spec);
      await worker.ready();
    }
    assert.deepEqual(deaths, [13, 13, 13]);
    const status = await worker.stop();
    assert.equal(status.code, 0);
    assert.match(
      worker.stderr,
      /report: Update 3 of lane k:1 was being run when 3 workers died: moved to the dead letters/,
    );
    assert.deepEqual(runsPerChat(api).get(1), [1, 2, 4, 5]);
    assert.deepEqual(runsPerChat(api).get(2), [6]);
    const letters = await kvQueue(server.kv).deadLetters();
    assert.deepEqual(letters.map((letter) => [letter.update.update_id, letter.attempts]), [[3, 3]]);
    assert.equal(letters[0]!.update.message?.text, "poison");
    assert.equal((await kvQueue(server.kv).counts()).deadLettered, 1);
  } finally {
    await worker.kill();
    await server.close();
    file.remove();
  }
});
