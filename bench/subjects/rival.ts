/**
 * Subject `rival`: `@grammyjs/runner` 2.0.3 from npm, the runner this module
 * replaces, with the same options as `grammyx`. It brings its own grammY
 * peer resolution; the bot it drives is the repo's grammY.
 *
 * ```ts
 * import { rival } from "./rival.ts";
 *
 * const driver = rival();
 * ```
 *
 * @module
 */

import { run, sequentialize } from "@grammyjs/runner";
import type { Driver } from "./_driver.ts";

/**
 * Builds the driver.
 *
 * @returns The driver
 */
export function rival(): Driver {
  return {
    sequentialize: (key) => sequentialize(key),
    start(bot, { concurrency }) {
      const handle = run(bot, { sink: { concurrency }, runner: { fetch: { timeout: 1 } } });
      return {
        stop: async () => void await handle.stop(),
        ended: handle.task() ?? Promise.resolve(),
        size: () => handle.size(),
      };
    },
  };
}
