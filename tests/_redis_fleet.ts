// A fleet of poller and worker processes (tests/_redis_child.ts) around one
// fake Bot API and one redis-server, for the Redis fleet tests and the bench,
// and the analysis of what the fake API received.

import type { FakeBotApi } from "../testing.ts";
import type { RedisServer } from "./_redis.ts";

const CHILD = new URL("_redis_child.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** One child process and what it printed. */
export class Child {
  readonly role: "poller" | "worker";
  readonly process: Deno.ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<Deno.CommandStatus>;
  stdout = "";
  stderr = "";
  readonly #reading: Promise<void>[];

  constructor(role: "poller" | "worker", args: string[]) {
    this.role = role;
    this.process = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--no-prompt",
        `--config=${CONFIG}`,
        "--allow-net=127.0.0.1",
        "--allow-env",
        "--allow-read",
        CHILD,
        role,
        ...args,
      ],
      env: { NO_COLOR: "1", NODE_OPTIONS: "--no-warnings" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const { promise: ready, resolve } = Promise.withResolvers<void>();
    this.ready = ready;
    this.#reading = [
      collect(this.process.stdout, (text) => {
        this.stdout += text;
        if (this.stdout.includes("ready\n")) resolve();
      }),
      collect(this.process.stderr, (text) => void (this.stderr += text)),
    ];
    this.exited = this.process.status.then(async (status) => {
      await Promise.all(this.#reading);
      return status;
    });
  }

  /** SIGKILL: no chance to stop cleanly. */
  async kill(): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch {
      // gone already
    }
    await this.exited;
  }

  /** SIGTERM: stop() drains; resolves with the exit code. */
  async stop(): Promise<number> {
    try {
      this.process.kill("SIGTERM");
    } catch {
      // gone already
    }
    return (await this.exited).code;
  }
}

async function collect(stream: ReadableStream<Uint8Array>, add: (text: string) => void) {
  for await (const text of stream.pipeThrough(new TextDecoderStream())) add(text);
}

/** Spawns children against one API and one Redis; disposing kills what is left. */
export class Fleet implements AsyncDisposable {
  readonly #api: FakeBotApi;
  readonly #server: RedisServer;
  readonly prefix: string;
  readonly partitions: number;
  readonly leaseMs: number;
  readonly children: Child[] = [];

  constructor(
    api: FakeBotApi,
    server: RedisServer,
    options: { prefix?: string; partitions?: number; leaseMs?: number } = {},
  ) {
    this.#api = api;
    this.#server = server;
    this.prefix = options.prefix ?? "fleet:";
    this.partitions = options.partitions ?? 16;
    this.leaseMs = options.leaseMs ?? 2_000;
  }

  /** Starts a child and waits until it runs (or fails if it exits first). */
  async spawn(role: "poller" | "worker"): Promise<Child> {
    const child = new Child(role, [
      this.#api.apiRoot,
      this.#api.token,
      this.#server.url,
      this.prefix,
      String(this.partitions),
      String(this.leaseMs),
    ]);
    this.children.push(child);
    const exitedEarly = child.exited.then((status) => {
      throw new Error(`${role} exited with ${status.code} before it was ready: ${child.stderr}`);
    });
    await Promise.race([child.ready, exitedEarly]);
    exitedEarly.catch(() => {});
    return child;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.children.map((child) => child.kill()));
  }
}

/** What the fake API received from the workers' sendMessage calls. */
export interface Delivery {
  /** Distinct update ids handled. */
  distinct: number;
  /** Handler runs beyond the first, summed over updates. */
  duplicates: number;
  /** Ids pushed and never handled. */
  missing: number[];
  /** Chats whose first-time ids were not in increasing order. */
  outOfOrder: number[];
  /** Handler runs per chat. */
  runsPerChat: Map<number, number>;
}

/** Reads the sent messages (text = update id) against the ids pushed. */
export function delivery(api: FakeBotApi, pushed: number[]): Delivery {
  const seen = new Set<number>();
  const lastPerChat = new Map<number, number>();
  const outOfOrder = new Set<number>();
  const runsPerChat = new Map<number, number>();
  let duplicates = 0;
  for (const { chat_id, text } of api.sentMessages) {
    const chat = Number(chat_id);
    const id = Number(text);
    runsPerChat.set(chat, (runsPerChat.get(chat) ?? 0) + 1);
    if (seen.has(id)) {
      duplicates++;
      continue;
    }
    seen.add(id);
    if ((lastPerChat.get(chat) ?? -1) > id) outOfOrder.add(chat);
    lastPerChat.set(chat, id);
  }
  return {
    distinct: seen.size,
    duplicates,
    missing: pushed.filter((id) => !seen.has(id)),
    outOfOrder: [...outOfOrder],
    runsPerChat,
  };
}

/** Counts the distinct update ids the fake API received, incrementally. */
export class Progress {
  readonly #api: FakeBotApi;
  readonly #seen = new Set<string>();
  #read = 0;

  constructor(api: FakeBotApi) {
    this.#api = api;
  }

  get handled(): number {
    const sent = this.#api.sentMessages;
    for (; this.#read < sent.length; this.#read++) this.#seen.add(sent[this.#read]!.text);
    return this.#seen.size;
  }

  /** Waits (checking every 20 ms) until `count` distinct ids were handled; fails after `limit` ms. */
  async until(count: number, limit: number, what: string): Promise<void> {
    const start = Date.now();
    while (this.handled < count) {
      if (Date.now() - start > limit) {
        throw new Error(`Timed out waiting for ${what}: ${this.handled} of ${count} handled`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
