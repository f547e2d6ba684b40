// connectRedis(): a node-redis client that fails fast on a wrong URL and,
// once connected, reconnects with capped backoff, reporting each failure in
// one line without the password.

import { createClient, type RedisClientType } from "./_redis_deps.ts";
import { redactSecrets } from "./_redact.ts";
import { defaultReporter, type Reporter, safeReport } from "./_report.ts";
import { reconnectPause } from "./_retry.ts";
import { isFunction, knownOptions, numberInRange, optionalObject, show } from "./_validate.ts";
import { MAX_DELAY } from "./_clock.ts";

/**
 * A connected node-redis v5 client, as `createClient()` returns it.
 *
 * @internal
 */
export type ConnectedRedis = RedisClientType;

/** Options of `connectRedis()`. */
export interface ConnectRedisOptions {
  /**
   * How long the first connection may take before `connectRedis()` rejects,
   * in milliseconds (also each reconnection's limit).
   *
   * @default {5_000}
   */
  connectTimeout?: number;
  /**
   * The longest pause between reconnection attempts after the connection
   * was lost, in milliseconds (pauses start at 100 ms and double).
   *
   * @default {2_000}
   */
  maxReconnectDelay?: number;
  /** Receives one report per lost connection and failed reconnection; one line on stderr by default. */
  reporter?: Reporter;
}

const SUBJECT = "Cannot connect to Redis";

/**
 * Connects a node-redis (v5) client to `url`. Rejects with a clear error
 * (the password replaced) if the URL is malformed or nothing answers there
 * within `connectTimeout`; once connected, a lost connection is retried
 * with capped backoff, each failure reported in one line, commands waiting
 * meanwhile. Close it with `destroy()` or `close()`.
 *
 * @param url `redis://[[user]:password@]host[:port][/db]` or `rediss://...`
 * @param options Timeouts, backoff and the reporter
 * @returns The connected client, for `redisQueue()`
 * @throws {TypeError | RangeError} if an argument is invalid (synchronously checked, rejected)
 *
 * @example
 * ```ts ignore
 * import { connectRedis } from "@grammyx/runner/redis_queue";
 *
 * const redis = await connectRedis(Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379");
 * await redis.sendCommand(["PING"]);
 * redis.destroy();
 * ```
 */
export async function connectRedis(
  url: string,
  options: ConnectRedisOptions = {},
): Promise<ConnectedRedis> {
  if (typeof url !== "string" || !URL.canParse(url)) {
    throw new TypeError(
      `${SUBJECT} as 'url' must be a URL such as redis://127.0.0.1:6379: current value is ${
        // A string that is not a URL may still hold a password: not shown.
        typeof url === "string" ? "a string that is not a URL" : show(url)}`,
    );
  }
  const parsed = new URL(url);
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new TypeError(
      `${SUBJECT} as 'url' must start with redis:// or rediss://: current value is ${
        show(redactSecrets(url))
      }`,
    );
  }
  optionalObject(SUBJECT, "options", options);
  knownOptions(SUBJECT, options, ["connectTimeout", "maxReconnectDelay", "reporter"]);
  const { connectTimeout = 5_000, maxReconnectDelay = 2_000, reporter = defaultReporter } = options;
  numberInRange(SUBJECT, "connectTimeout", connectTimeout, 1, MAX_DELAY);
  numberInRange(SUBJECT, "maxReconnectDelay", maxReconnectDelay, 1, MAX_DELAY);
  isFunction(SUBJECT, "reporter", reporter);

  const password = decodeURIComponent(parsed.password);
  const where = redactSecrets(`${parsed.protocol}//${parsed.host}`, password);
  const clean = (error: unknown) =>
    redactSecrets(error instanceof Error ? error.message : String(error), password);
  let connected = false;
  let firstFailure: unknown;
  const client = createClient({
    url,
    socket: {
      connectTimeout,
      reconnectStrategy: (retries: number, cause: Error) => {
        if (!connected) {
          firstFailure ??= cause;
          return false;
        }
        const pause = Math.round(reconnectPause(retries + 1, maxReconnectDelay));
        safeReport(reporter, {
          source: "queue",
          message:
            `Lost the connection to Redis at ${where}, reconnecting in ${pause} ms (attempt ${
              retries + 1
            }): ${clean(cause)}`,
        });
        return pause;
      },
    },
  }) as unknown as RedisClientType;
  // Failures are reported by the reconnect strategy; without a listener an
  // 'error' event would end the process.
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (error) {
    try {
      client.destroy();
    } catch {
      // closed already: the strategy gave up
    }
    throw new Error(`${SUBJECT} at ${where}: ${clean(firstFailure ?? error)}`);
  }
  connected = true;
  return client;
}
