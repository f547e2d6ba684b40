/**
 * Subject `grammyx`: this module's `run()` and `sequentialize()`, with the
 * options the scenarios name and a 1 s long poll.
 *
 * ```ts
 * import { grammyx } from "./grammyx.ts";
 *
 * const handled = grammyx({ confirm: "handled" }); // a confirm-mode row
 * ```
 *
 * @module
 */

import { run, type RunnerOptions, sequentialize } from "../../mod.ts";
import { kvJournal } from "../../journal.ts";
import type { Driver } from "./_driver.ts";

/**
 * The `grammyx-journal` row: a Deno KV journal in a fresh local file (as a
 * bot on one machine would use), removed when the process ends.
 *
 * @returns The driver
 */
export async function grammyxJournal(): Promise<Driver> {
  const path = await Deno.makeTempFile({ prefix: "grammyx-bench-", suffix: ".kv" });
  const kv = await Deno.openKv(path);
  globalThis.addEventListener("unload", () => {
    kv.close();
    for (const suffix of ["", "-shm", "-wal"]) {
      try {
        Deno.removeSync(path + suffix);
      } catch {
        // already gone
      }
    }
  });
  return grammyx({ journal: kvJournal(kv) });
}

/**
 * Builds the driver, with extra runner options for variant rows.
 *
 * @param runner Runner options merged over `{ fetch: { timeout: 1 } }`
 * @returns The driver
 */
export function grammyx(runner: RunnerOptions = {}): Driver {
  return {
    sequentialize: (key) => sequentialize(key),
    start(bot, { concurrency }) {
      const handle = run(bot, {
        sink: { concurrency },
        runner: { fetch: { timeout: 1 }, ...runner },
      });
      return {
        stop: async () => void await handle.stop(),
        ended: handle.task() ?? Promise.resolve(),
        size: () => handle.size(),
      };
    },
  };
}
