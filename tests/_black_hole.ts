// A TCP proxy that can go silent, for tests of stalls and partitions: the
// stall watchdog (watchdog_test.ts) and a Redis worker cut off from Redis
// (redis_run_test.ts).

/**
 * A TCP proxy on 127.0.0.1 in front of `target`. While `silent`, it accepts
 * each connection, reads what the client sends and never answers (a black
 * hole); otherwise it passes bytes both ways. Switching closes the open
 * connections, so that the client's next request opens a new one.
 */
export class BlackHole implements AsyncDisposable {
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #target: number;
  readonly #open = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  #silent = true;
  /** Connections accepted while silent. */
  swallowed = 0;

  constructor(target: number) {
    this.#target = target;
    this.#accepting = this.#accept();
  }

  /** The proxy's port on 127.0.0.1. */
  get port(): number {
    return this.#listener.addr.port;
  }

  get root(): string {
    return `http://127.0.0.1:${this.#listener.addr.port}`;
  }

  /** Stops answering (new connections are swallowed, open ones closed). */
  silence(): void {
    this.#silent = true;
    this.#closeOpen();
  }

  /** Starts passing traffic to the target. */
  answer(): void {
    this.#silent = false;
    this.#closeOpen();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) this.#track(this.#serve(conn), conn);
    } catch {
      // the listener closed
    }
  }

  #track(task: Promise<void>, ...conns: Deno.Conn[]): void {
    for (const conn of conns) this.#open.add(conn);
    const done = task.catch(() => {}).finally(() => {
      for (const conn of conns) {
        this.#open.delete(conn);
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      this.#tasks.delete(done);
    });
    this.#tasks.add(done);
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    if (this.#silent) {
      this.swallowed++;
      for await (const _ of conn.readable) {
        // read and never answer
      }
      return;
    }
    const upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
    this.#open.add(upstream);
    try {
      await Promise.race([
        conn.readable.pipeTo(upstream.writable, { preventClose: true }),
        upstream.readable.pipeTo(conn.writable, { preventClose: true }),
      ]);
    } finally {
      this.#open.delete(upstream);
      try {
        upstream.close();
      } catch {
        // already closed
      }
    }
  }

  #closeOpen(): void {
    for (const conn of this.#open) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    this.#closeOpen();
    await this.#accepting;
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}
