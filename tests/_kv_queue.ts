// Helpers for the queue tests: Telegram-shaped updates, posting them to a
// webhook handler, KV files in /tmp, and a KV whose writes can be made to fail.

import type { Update } from "../_deps.ts";

/** A text message update in private chat `chat`. */
export function message(id: number, chat: number, text = `message ${id}`): Update {
  return {
    update_id: id,
    message: {
      message_id: id,
      date: 1_700_000_000,
      chat: { id: chat, type: "private", first_name: "User" },
      from: { id: chat, is_bot: false, first_name: "User" },
      text,
    },
  } as Update;
}

/** A request as Telegram sends it to a webhook. */
export function webhookRequest(
  body: string | Uint8Array,
  options: { secret?: string; method?: string; url?: string } = {},
): Request {
  const { secret, method = "POST", url = "http://127.0.0.1/bot" } = options;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (secret !== undefined) headers["X-Telegram-Bot-Api-Secret-Token"] = secret;
  return new Request(url, {
    method,
    headers,
    ...(method === "GET" || method === "HEAD" ? {} : { body: body as BodyInit }),
  });
}

/** Calls `handler` and returns the status, reading the body to the end. */
export async function statusOf(
  handler: (request: Request) => Promise<Response>,
  request: Request,
): Promise<number> {
  const response = await handler(request);
  await response.body?.cancel();
  return response.status;
}

/** Every entry under `prefix`, dedupe records left out unless `withSeen`. */
export async function entries(
  kv: Deno.Kv,
  prefix: Deno.KvKey = ["grammyx-queue"],
  withSeen = false,
): Promise<Deno.KvEntry<unknown>[]> {
  const found: Deno.KvEntry<unknown>[] = [];
  for await (const entry of kv.list({ prefix })) {
    if (withSeen || entry.key[prefix.length] !== "seen") found.push(entry);
  }
  return found;
}

/** A fresh KV file path in /tmp; `remove` deletes it and SQLite's side files. */
export function kvPath(name: string): { path: string; remove: () => void } {
  const path = `/tmp/grammyx-${name}-${crypto.randomUUID()}.kv`;
  return {
    path,
    remove: () => {
      for (const suffix of ["", "-shm", "-wal"]) {
        try {
          Deno.removeSync(path + suffix);
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
      }
    },
  };
}

/**
 * A `Deno.Kv` whose atomic commits throw while `failing` is true (a storage
 * outage), counting the failures; everything else goes to the real KV.
 */
export function flakyKv(kv: Deno.Kv): { kv: Deno.Kv; failing: boolean; failures: number } {
  const state = { kv: kv, failing: false, failures: 0 };
  state.kv = new Proxy(kv, {
    get(target, property) {
      if (property === "atomic") {
        return () => {
          const operation = target.atomic();
          return new Proxy(operation, {
            get(op, name) {
              if (name === "commit") {
                return () => {
                  if (state.failing) {
                    state.failures++;
                    return Promise.reject(new Error("storage unavailable"));
                  }
                  return op.commit();
                };
              }
              const value = Reflect.get(op, name, op);
              return typeof value === "function"
                ? (...args: unknown[]) => {
                  value.apply(op, args);
                  return new Proxy(op, this);
                }
                : value;
            },
          });
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return state;
}
