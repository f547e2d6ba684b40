/**
 * The one place the library names grammY, with a full `npm:` specifier.
 *
 * A bare `"grammy"` resolves only through this repository's `deno.json`, so a
 * module imported by URL (deno.land/x, a raw file URL) with no import map would
 * fail to load. JSR maps this specifier to the `grammy` package for Node and Bun.
 *
 * @module
 */

export { Bot, BotError, Context } from "npm:grammy@^1.46.0";
export type { Api, BotConfig } from "npm:grammy@^1.46.0";
export type { Message, Update, UserFromGetMe } from "npm:grammy@^1.46.0/types";
export type { WebhookInfo } from "npm:grammy@^1.46.0/types";
