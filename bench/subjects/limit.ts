/**
 * Subject `limit`: the least work any runner could do, an upper bound on
 * throughput. It calls getUpdates in a loop and runs each batch through
 * `bot.handleUpdate` with `Promise.all`, without a bound and without waiting
 * for the previous batch, then moves the offset. No retries, no order, no
 * lossless stop.
 *
 * ```ts
 * import { limit } from "./limit.ts";
 *
 * const driver = limit();
 * ```
 *
 * @module
 */

import type { Bot } from "grammy";
import type { Driver } from "./_driver.ts";

/**
 * Builds the driver.
 *
 * @returns The driver
 */
export function limit(): Driver {
  return {
    start(bot) {
      const controller = new AbortController();
      const ended = poll(bot, controller.signal);
      return {
        stop: async () => {
          controller.abort();
          await ended.catch(() => {});
        },
        ended,
      };
    },
  };
}

/** grammY's npm build declares its own `AbortSignal` type; a standard one works. */
type GrammySignal = Parameters<Bot["api"]["getUpdates"]>[1];

async function poll(bot: Bot, signal: AbortSignal): Promise<void> {
  let offset = 0;
  while (!signal.aborted) {
    let updates;
    try {
      updates = await bot.api.getUpdates(
        { offset, limit: 100, timeout: 1 },
        signal as GrammySignal,
      );
    } catch (error) {
      if (signal.aborted) return;
      throw error;
    }
    const last = updates.at(-1);
    if (last === undefined) continue;
    offset = last.update_id + 1;
    void Promise.all(updates.map((update) => bot.handleUpdate(update))).catch(() => {});
  }
}
