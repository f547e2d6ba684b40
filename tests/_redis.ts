// A real redis-server per test: started on a free 127.0.0.1 port with its own
// temporary directory, restartable on the same port and directory (what a
// Redis restart looks like to clients), stopped and removed at the end.
//
// Without redis-server on the machine, `redisTest()` registers its tests as
// ignored and prints one line saying why, unless CI=true, where they fail.

/** Where redis-server is looked for: $REDIS_SERVER only if set, else /usr/bin, then $PATH. */
function findRedisServer(): string | undefined {
  const chosen = Deno.env.get("REDIS_SERVER");
  const candidates = chosen ? [chosen] : [
    "/usr/bin/redis-server",
    ...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((dir) => `${dir}/redis-server`),
  ];
  for (const path of candidates) {
    if (path === undefined || path === "") continue;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** The redis-server binary, if the machine has one. */
export const REDIS_SERVER: string | undefined = findRedisServer();

const onCi = Deno.env.get("CI") === "true";
let toldWhySkipped = false;

/**
 * Registers a test that needs redis-server. Without it: ignored, with one
 * line on stderr (once per file) saying why; under CI=true it fails instead.
 */
export function redisTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  if (REDIS_SERVER !== undefined) {
    Deno.test({ name, fn });
    return;
  }
  if (onCi) {
    Deno.test(name, () => {
      throw new Error(
        "redis-server is not installed, and CI=true requires the Redis tests to run (.ci/run installs it with apt-get)",
      );
    });
    return;
  }
  if (!toldWhySkipped) {
    toldWhySkipped = true;
    console.error(
      `Skipping the Redis tests: no redis-server ${
        Deno.env.get("REDIS_SERVER") ? "at $REDIS_SERVER" : "in /usr/bin or $PATH"
      } (apt-get install redis-server, or set REDIS_SERVER to its path)`,
    );
  }
  Deno.test({ name, ignore: true, fn });
}

/** Options of `RedisServer.start()`. */
export interface RedisServerOptions {
  /** Append-only file with fsync on every write: a restart keeps every acknowledged write. */
  aof?: boolean;
  /** A password clients must give (`requirepass`). */
  password?: string;
  /** With `aof`: fsync on every write ("always", the default here) or once a second. */
  appendfsync?: "always" | "everysec";
}

/** One redis-server process of this test; `await using` stops it and removes its directory. */
export class RedisServer implements AsyncDisposable {
  readonly port: number;
  readonly dir: string;
  readonly aof: boolean;
  readonly password: string | undefined;
  readonly appendfsync: "always" | "everysec";
  #process: Deno.ChildProcess | undefined;
  #removed = false;

  private constructor(port: number, dir: string, options: RedisServerOptions) {
    this.port = port;
    this.dir = dir;
    this.aof = options.aof ?? false;
    this.password = options.password;
    this.appendfsync = options.appendfsync ?? "always";
  }

  /** `redis://127.0.0.1:PORT`, with `:PASSWORD@` if the server has one. */
  get url(): string {
    const auth = this.password === undefined ? "" : `:${encodeURIComponent(this.password)}@`;
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  /** The server's process id, while it runs. */
  get pid(): number | undefined {
    return this.#process?.pid;
  }

  /** Whether the server process is running. */
  get running(): boolean {
    return this.#process !== undefined;
  }

  /** Starts a server on a free port with a new temporary directory, and waits until it answers. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    if (REDIS_SERVER === undefined) throw new Error("redis-server is not installed");
    const dir = await Deno.makeTempDir({ prefix: "grammyx-redis-" });
    // A few tries: another process may take the port between probe and bind.
    for (let attempt = 1;; attempt++) {
      const server = new RedisServer(freePort(), dir, options);
      try {
        await server.#launch();
        return server;
      } catch (error) {
        if (attempt === 5) {
          await Deno.remove(dir, { recursive: true }).catch(() => {});
          throw error;
        }
      }
    }
  }

  /** Starts the server again on the same port and directory (after `kill()` or `stop()`). */
  async restart(): Promise<void> {
    if (this.#process !== undefined) await this.kill();
    // The port was just freed; give the OS a few tries to let it go.
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#launch();
      } catch (error) {
        if (attempt === 20) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /** Kills the server at once (SIGKILL): what was not written to disk is gone. */
  kill(): Promise<void> {
    return this.#end("SIGKILL");
  }

  /** Stops the server (SIGTERM: it saves and exits) and waits for it. */
  stop(): Promise<void> {
    return this.#end("SIGTERM");
  }

  async #end(signal: Deno.Signal): Promise<void> {
    const process = this.#process;
    if (process === undefined) return;
    this.#process = undefined;
    try {
      process.kill(signal);
    } catch {
      // already gone
    }
    await process.status;
  }

  /** Stops the server and removes its directory. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
    if (this.#removed) return;
    this.#removed = true;
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async #launch(): Promise<void> {
    const args = [
      "--port",
      String(this.port),
      "--bind",
      "127.0.0.1",
      "--dir",
      this.dir,
      "--save",
      "",
      "--appendonly",
      this.aof ? "yes" : "no",
      "--appendfsync",
      this.appendfsync,
      "--protected-mode",
      "yes",
      "--daemonize",
      "no",
      "--logfile",
      "redis.log",
      ...(this.password === undefined ? [] : ["--requirepass", this.password]),
    ];
    const process = new Deno.Command(REDIS_SERVER!, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#process = process;
    const exited = process.status.then((status) => status);
    const deadline = Date.now() + 5_000;
    while (true) {
      const state = await Promise.race([exited, ping(this.port)]);
      if (state === true) return;
      if (typeof state === "object") {
        this.#process = undefined;
        const log = await Deno.readTextFile(`${this.dir}/redis.log`).catch(() => "");
        throw new Error(
          `redis-server exited with code ${state.code} on port ${this.port}: ${
            log.trim().split("\n").slice(-2).join(" | ")
          }`,
        );
      }
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`redis-server did not answer on port ${this.port} within 5 s`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

/** A port no one listens on right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Whether a server on `port` answers PING with PONG, or, with a password,
 * with NOAUTH (so it is up and done loading its data: loading answers LOADING).
 */
async function ping(port: number): Promise<boolean> {
  let connection: Deno.TcpConn | undefined;
  try {
    connection = await Deno.connect({ hostname: "127.0.0.1", port });
    await connection.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(64);
    const read = await connection.read(buffer);
    const answer = read === null ? "" : new TextDecoder().decode(buffer.subarray(0, read));
    return answer.startsWith("+PONG") || answer.startsWith("-NOAUTH");
  } catch {
    return false;
  } finally {
    connection?.close();
  }
}
