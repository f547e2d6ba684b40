/**
 * Subject `botstart`: grammY's own `bot.start()`, which fetches a batch and
 * handles its updates one after another. It needs no `sequentialize`: it is
 * sequential already, so scenarios that ask for one run it without.
 *
 * ```ts
 * import { botstart } from "./botstart.ts";
 *
 * const driver = botstart();
 * ```
 *
 * @module
 */

import type { Driver } from "./_driver.ts";

/**
 * Builds the driver.
 *
 * @returns The driver
 */
export function botstart(): Driver {
  return {
    start(bot) {
      const ended = bot.start({ timeout: 1, limit: 100 });
      return { stop: () => bot.stop(), ended };
    },
  };
}
