// Shared test helpers: gates, microtask flushing, small fakes.

/** A promise with its resolve function, to release a handler at the right moment. */
export function gate(): { promise: Promise<void>; open: () => void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, open: () => resolve() };
}

/** Lets every queued microtask and ready timer callback run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Whether `promise` is still pending after the microtask queue drained. */
export async function isPending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => (settled = true), () => (settled = true));
  await flush();
  return !settled;
}

/** Waits until `condition()` holds, checking every few ms, failing after `limit` ms. */
export async function until(
  condition: () => boolean,
  limit = 10_000,
  what = "condition",
): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > limit) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Fails if `promise` has not settled after `ms` of real time (instead of hanging the suite). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const guard = new AbortController();
  const timedOut = sleepUnlessAborted(ms, guard.signal).then(() => {
    throw new Error(`${what} did not settle within ${ms} ms`);
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    guard.abort();
    timedOut.catch(() => {});
  }
}

function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** A deterministic pseudo-random generator (mulberry32). */
export { seededRandom as random } from "../_random.ts";

/** Sleeps `ms`; used only to simulate handler work, never to order events. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A minimal update for unit tests. */
export interface TestUpdate {
  update_id: number;
  key?: string | string[];
}

/** Runs a script with `deno run --allow-env` and the given flags; returns its exit code and output. */
export async function runScript(
  url: URL,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-env", url.pathname, ...args],
    env: { NO_COLOR: "1", NODE_OPTIONS: "--no-warnings" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}
