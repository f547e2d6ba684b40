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
import type { Driver } from "./_driver.ts";

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
