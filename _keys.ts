// The key rules that `sequentialize()` and `distribute()` share: what a key
// function may return. Not exported by mod.ts.
//
// A key is a string, a number or a bigint; numbers and bigints become their
// decimal text, so 5, 5n and "5" are one key. A falsy value (undefined, null,
// "", 0, NaN, false) is no key, as `@grammyjs/runner` drops falsy keys
// (Telegram ids are never 0). Anything else is a mistake, most often an
// object where its id was meant (`ctx.chat` for `ctx.chat?.id`), and throws
// rather than silently turning ordering off.

import { show } from "./_validate.ts";

/**
 * The text of one key, or `undefined` for none.
 *
 * @param value What the key function returned
 * @param source Names the key function at the start of an error message
 * @throws {TypeError} if `value` is neither falsy nor a string, a number or a bigint
 */
export function keyOf(value: unknown, source: string): string | undefined {
  return keyText(value, `${source} returned`);
}

/**
 * The distinct keys of one key or an array of keys, without the falsy ones.
 *
 * @param value What the key function returned
 * @param source Names the key function at the start of an error message
 * @throws {TypeError} if `value`, or an item of it, is neither falsy nor a string, a number or a bigint
 */
export function keysOf(value: unknown, source: string): string[] {
  if (!Array.isArray(value)) {
    const key = keyOf(value, source);
    return key === undefined ? [] : [key];
  }
  const keys = new Set<string>();
  for (const item of value) {
    const key = keyText(item, `${source} returned an array holding`);
    if (key !== undefined) keys.add(key);
  }
  return [...keys];
}

/** The text of a key; `returned` starts the error message. */
function keyText(value: unknown, returned: string): string | undefined {
  if (!value) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  const object = typeof value === "object" && !Array.isArray(value);
  const hint = object ? ", not ctx.chat" : ", or undefined for no key";
  throw new TypeError(
    `${returned} ${
      describe(value)
    }: return a string, a number or a bigint such as ctx.chat?.id${hint}`,
  );
}

/** Names the type of a value that is not a key. */
function describe(value: unknown): string {
  return typeof value === "symbol" ? `a symbol (${String(value)})` : show(value);
}
