// How `kvJournal` fits its writes into Deno KV's limits: an update too large
// for one KV value is split into parts and joined again on read, and the
// mutations of a store or a finish are packed, in order, into as few atomic
// operations as Deno KV accepts. Sizes are upper-bound estimates, so a pack
// never fails on a limit; nothing here reads or writes the database.

import { show } from "./_validate.ts";

/** Deno KV's limits for one atomic operation and one value, less a margin for the estimates. */
export const LIMITS = {
  /** Mutations per atomic operation: Deno KV takes 1 000. */
  mutations: 1_000,
  /** Total size of the mutations of one atomic operation: Deno KV takes 819 200 bytes. */
  payload: 780_000,
  /** Total size of the keys written by one atomic operation: Deno KV takes 81 920 bytes. */
  keyBytes: 78_000,
  /** Size of one value: Deno KV takes 65 536 bytes. */
  value: 60_000,
} as const;

/** Characters per part of an update stored in parts: at most 2 bytes each in V8's serialization. */
export const PART_LENGTH = 25_000;

/** The field of the entry of an update stored in parts: how many parts it has. */
const PARTS = "grammyx-runner:parts";

/** One KV mutation with its estimated cost. */
export interface Mutation {
  key: Deno.KvKey;
  /** `undefined` deletes the key. */
  value?: unknown;
  /** The size of the key written (0 for a delete, which writes no key). */
  keyBytes: number;
  /** What the mutation adds to the total mutation size of its atomic operation. */
  payload: number;
}

/** A mutation that sets `key` to `value`, whose serialized size is at most `valueSize`. */
export function setMutation(key: Deno.KvKey, value: unknown, valueSize: number): Mutation {
  const bytes = keyBytes(key);
  return { key, value, keyBytes: bytes, payload: 2 * bytes + valueSize };
}

/** A mutation that deletes `key`. */
export function deleteMutation(key: Deno.KvKey): Mutation {
  return { key, keyBytes: 0, payload: keyBytes(key) };
}

/**
 * The room to keep in the last atomic operation for a check on `key` and a
 * set of it to a value of at most `valueSize` bytes, added by the caller.
 */
export function checkedSetRoom(key: Deno.KvKey, valueSize: number): Mutation {
  const room = setMutation(key, undefined, valueSize);
  room.payload += room.keyBytes; // the check
  return room;
}

/** Adds `mutation` to an atomic operation. */
export function applyMutation(operation: Deno.AtomicOperation, mutation: Mutation): void {
  if (mutation.value === undefined) operation.delete(mutation.key);
  else operation.set(mutation.key, mutation.value);
}

/**
 * The mutations that store `update` at `entryKey`: one set if it fits in one
 * value, else its parts at `[...entryKey, index]` first and, last, an entry
 * that names how many there are (so an entry never names parts not written).
 *
 * @returns The mutations and the number of parts (0 for an update in one value)
 */
export function storeMutations(
  entryKey: Deno.KvKey,
  update: { update_id: number },
): { mutations: Mutation[]; parts: number } {
  const size = valueBytes(update);
  if (size <= LIMITS.value) return { mutations: [setMutation(entryKey, update, size)], parts: 0 };
  const pieces = splitText(JSON.stringify(update));
  const mutations = pieces.map((piece, index) =>
    setMutation([...entryKey, index], piece, 2 * piece.length + 16)
  );
  mutations.push(
    setMutation(entryKey, { update_id: update.update_id, [PARTS]: pieces.length }, 64),
  );
  return { mutations, parts: pieces.length };
}

/**
 * The mutations that remove the update at `entryKey` and its `parts` parts:
 * the entry first, so parts left by a finish cut short have no entry naming
 * them, and a later scan removes them.
 */
export function removeMutations(entryKey: Deno.KvKey, parts: number): Mutation[] {
  const mutations = [deleteMutation(entryKey)];
  for (let index = 0; index < parts; index++) mutations.push(deleteMutation([...entryKey, index]));
  return mutations;
}

/**
 * Splits mutations, in order, into groups that fit in one atomic operation
 * each. With `reserve`, the last group keeps room for that mutation, which the
 * caller adds to it (it is not in the result; the last group may be empty).
 */
export function pack(mutations: Mutation[], options: { reserve?: Mutation } = {}): Mutation[][] {
  const { reserve } = options;
  const chunks: Mutation[][] = [];
  let chunk: Mutation[] = [];
  let payload = 0;
  let keys = 0;
  for (const mutation of reserve === undefined ? mutations : [...mutations, reserve]) {
    const full = chunk.length === LIMITS.mutations || payload + mutation.payload > LIMITS.payload ||
      keys + mutation.keyBytes > LIMITS.keyBytes;
    if (full && chunk.length > 0) {
      chunks.push(chunk);
      chunk = [];
      payload = keys = 0;
    }
    chunk.push(mutation);
    payload += mutation.payload;
    keys += mutation.keyBytes;
  }
  if (chunk.length > 0) chunks.push(chunk);
  if (reserve !== undefined) chunks.at(-1)!.pop();
  return chunks;
}

/**
 * The number of parts an entry's value names, if it is the entry of an update
 * stored in parts (not checked: `joinParts` does that); `undefined` if not.
 */
export function partCount(value: unknown): unknown {
  return isObject(value) ? value[PARTS] : undefined;
}

/** Joins the parts of an update stored in parts; `undefined` if they are not complete. */
export function joinParts(parts: Deno.KvEntry<unknown>[], count: unknown): unknown {
  if (!Number.isSafeInteger(count) || parts.length !== count) return undefined;
  const pieces: string[] = [];
  for (const [index, part] of parts.entries()) {
    if (part.key.at(-1) !== index || typeof part.value !== "string") return undefined;
    pieces.push(part.value);
  }
  try {
    return JSON.parse(pieces.join(""));
  } catch {
    return undefined;
  }
}

/** Splits `text` into pieces of at most `PART_LENGTH` characters, keeping surrogate pairs whole. */
export function splitText(text: string): string[] {
  const pieces: string[] = [];
  for (let start = 0; start < text.length;) {
    let end = Math.min(start + PART_LENGTH, text.length);
    const code = text.charCodeAt(end - 1);
    if (end < text.length && code >= 0xd800 && code <= 0xdbff) end--; // keep pairs whole
    pieces.push(text.slice(start, end));
    start = end;
  }
  return pieces;
}

const encoder = new TextEncoder();

/** An upper bound of the size of an encoded KV key. */
export function keyBytes(key: Deno.KvKey): number {
  let size = 0;
  for (const part of key) {
    if (typeof part === "string") size += 2 * encoder.encode(part).length + 2;
    else if (part instanceof Uint8Array) size += 2 * part.length + 2;
    else if (typeof part === "bigint") size += Math.ceil(part.toString(16).length / 2) + 3;
    else size += 9;
  }
  return size;
}

/** An upper bound of the size of a V8-serialized update: twice its UTF-8 JSON, plus a margin. */
export function valueBytes(update: unknown): number {
  return 2 * utf8Length(JSON.stringify(update)) + 64;
}

/** The UTF-8 length of `text`, without encoding it (this runs for every stored update). */
export function utf8Length(text: string): number {
  let length = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) length += 1;
    else if (code >= 0xd800 && code <= 0xdbff) i++, length += 2; // a pair: 4 bytes for 2 units
    else length += 2;
  }
  return length;
}

/** Whether `part` may be a part of a KV key. */
export function isKeyPart(part: unknown): boolean {
  return ["string", "number", "bigint", "boolean"].includes(typeof part) ||
    part instanceof Uint8Array;
}

/**
 * Checks a `prefix` option: a non-empty array of KV key parts. Returns a copy,
 * so that a caller changing its array later cannot move the entries.
 */
export function checkedPrefix(subject: string, prefix: unknown): Deno.KvKeyPart[] {
  if (!Array.isArray(prefix) || !prefix.every(isKeyPart)) {
    throw new TypeError(
      `${subject} as 'prefix' must be an array of KV key parts: current value is ${show(prefix)}`,
    );
  }
  if (prefix.length === 0) {
    throw new RangeError(
      `${subject} as 'prefix' must hold at least one key part: current value is []`,
    );
  }
  return [...prefix];
}

/** A KV key for a message: `["bot", "update", 7]`. */
export function formatKey(key: Deno.KvKey): string {
  return `[${key.map(show).join(", ")}]`;
}

/** Whether `value` is an object (not an array) whose `update_id` is `id`. */
export function isUpdateWithId(value: unknown, id: number): boolean {
  return isObject(value) && value.update_id === id;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
