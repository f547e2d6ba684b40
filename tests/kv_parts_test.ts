import assert from "node:assert/strict";
import { serialize } from "node:v8";
import {
  applyMutation,
  checkedSetRoom,
  deleteMutation,
  formatKey,
  isKeyPart,
  joinParts,
  keyBytes,
  LIMITS,
  type Mutation,
  pack,
  PART_LENGTH,
  partCount,
  removeMutations,
  setMutation,
  splitText,
  storeMutations,
  utf8Length,
  valueBytes,
} from "../_kv_parts.ts";
import { seededRandom } from "../_random.ts";

/** KV entries holding `pieces` as the parts of the update at `key`, as a list of KV returns them. */
function entries(key: Deno.KvKey, pieces: string[]): Deno.KvEntry<unknown>[] {
  return pieces.map((value, index) => ({ key: [...key, index], value, versionstamp: "0" }));
}

/** Commits each chunk in its own atomic operation, as `kvJournal` does. */
async function commitAll(kv: Deno.Kv, chunks: Mutation[][]): Promise<void> {
  for (const chunk of chunks) {
    const operation = kv.atomic();
    for (const mutation of chunk) applyMutation(operation, mutation);
    assert.ok((await operation.commit()).ok);
  }
}

const TEXTS: [string, string][] = [
  ["ASCII", "a".repeat(3 * PART_LENGTH + 17)],
  ["two-byte UTF-8 (Cyrillic)", "ж".repeat(2 * PART_LENGTH + 1)],
  ["three-byte UTF-8 (CJK)", "漢字".repeat(PART_LENGTH)],
  ["four-byte UTF-8 (emoji) across every boundary", "😀".repeat(2 * PART_LENGTH)],
  [
    "an emoji pair straddling the first boundary",
    "a".repeat(PART_LENGTH - 1) + "😀" + "b".repeat(5),
  ],
  ["mixed", "hé 漢 😀 ".repeat(12_345)],
  ["shorter than one part", "ж😀"],
  ["empty", ""],
];

Deno.test("splitText and joinParts give back the text, multi-byte UTF-8 included", async (t) => {
  for (const [name, text] of TEXTS) {
    await t.step(name, () => {
      const pieces = splitText(text);
      assert.equal(pieces.join(""), text);
      for (const piece of pieces) {
        assert.ok(piece.length > 0 && piece.length <= PART_LENGTH);
        // No piece starts with the low half or ends with the high half of a surrogate pair.
        assert.ok(!/^[\udc00-\udfff]/.test(piece) && !/[\ud800-\udbff]$/.test(piece));
        // Each piece survives a round trip through UTF-8, which a split pair would not.
        assert.equal(new TextDecoder().decode(new TextEncoder().encode(piece)), piece);
      }
      const update = JSON.stringify({ update_id: 1, text });
      assert.deepEqual(
        joinParts(entries(["u", 1], splitText(update)), splitText(update).length),
        { update_id: 1, text },
      );
    });
  }
});

Deno.test("joinParts returns undefined for parts that do not make a whole update", () => {
  const pieces = splitText(JSON.stringify({ update_id: 1, text: "ж".repeat(PART_LENGTH) }));
  assert.equal(pieces.length, 2);
  const parts = entries(["u", 1], pieces);
  assert.equal(joinParts(parts, 3), undefined, "a part missing");
  assert.equal(joinParts(parts, "2"), undefined, "a count that is not a number");
  assert.equal(joinParts(parts.slice(1), 1), undefined, "a part in the wrong place");
  assert.equal(joinParts([parts[0]!, { ...parts[1]!, value: 5 }], 2), undefined, "not text");
  assert.equal(joinParts(parts.slice(0, 1), 1), undefined, "not JSON");
});

Deno.test("storeMutations stores an update in one value, or in parts before the entry naming them", async () => {
  const small = { update_id: 1, text: "hi" };
  const one = storeMutations(["u", 1], small);
  assert.equal(one.parts, 0);
  assert.deepEqual(one.mutations.map((mutation) => mutation.key), [["u", 1]]);
  assert.equal(partCount(one.mutations[0]!.value), undefined);

  const huge = { update_id: 2, text: "😀 ".repeat(60_000) };
  const split = storeMutations(["u", 2], huge);
  assert.ok(split.parts > 2);
  assert.deepEqual(
    split.mutations.map((mutation) => mutation.key),
    [...Array.from({ length: split.parts }, (_, index) => ["u", 2, index]), ["u", 2]],
  );
  const entry = split.mutations.at(-1)!;
  assert.equal(partCount(entry.value), split.parts);
  const pieces = split.mutations.slice(0, -1).map((mutation) => mutation.value as string);
  assert.deepEqual(joinParts(entries(["u", 2], pieces), partCount(entry.value)), huge);

  // Deno KV accepts every value written, and reads back what was stored.
  using kv = await Deno.openKv(":memory:");
  await commitAll(kv, pack([...one.mutations, ...split.mutations]));
  const listed = await Array.fromAsync(kv.list({ prefix: ["u", 2] }));
  assert.deepEqual(joinParts(listed, partCount((await kv.get(["u", 2])).value)), huge);
});

Deno.test("removeMutations deletes the entry first, then its parts", () => {
  const keys = removeMutations(["u", 3], 2).map((mutation) => [mutation.key, mutation.value]);
  assert.deepEqual(keys, [[["u", 3], undefined], [["u", 3, 0], undefined], [
    ["u", 3, 1],
    undefined,
  ]]);
  assert.deepEqual(removeMutations(["u", 4], 0).map((mutation) => mutation.key), [["u", 4]]);
});

Deno.test("the size estimates are upper bounds of what Deno KV counts", async (t) => {
  await t.step("utf8Length is the UTF-8 length, lone surrogates included", () => {
    for (const text of ["", "abc", "ж", "漢", "😀", "a\ud800", "\ud800a", "\udc00", "\ud800"]) {
      assert.equal(utf8Length(text), new TextEncoder().encode(text).length, JSON.stringify(text));
    }
    for (const [, text] of TEXTS) {
      assert.equal(utf8Length(text), new TextEncoder().encode(text).length);
    }
  });
  await t.step("valueBytes is at least the V8-serialized size", () => {
    for (const [name, text] of TEXTS) {
      const update = { update_id: 1, message: { text, entities: [{ offset: 0 }] } };
      assert.ok(valueBytes(update) >= serialize(update).length, name);
    }
  });
  await t.step("a part of the longest length fits in one KV value", () => {
    for (const [name, text] of TEXTS) {
      for (const piece of splitText(text)) {
        assert.ok(serialize(piece).length <= LIMITS.value, name);
      }
    }
  });
  await t.step("keyBytes grows with every kind of key part", () => {
    const parts: Deno.KvKeyPart[] = ["ж", 1, 2n ** 70n, true, new Uint8Array(3)];
    for (const part of parts) {
      assert.ok(keyBytes(["bot", part]) > keyBytes(["bot"]), formatKey([part]));
    }
    assert.ok(keyBytes(["ж"]) > keyBytes(["a"]), "multi-byte text counts its bytes");
  });
});

/** Sums what a chunk adds to each of Deno KV's limits. */
function totals(chunk: Mutation[]): { payload: number; keys: number } {
  let payload = 0;
  let keys = 0;
  for (const mutation of chunk) {
    payload += mutation.payload;
    keys += mutation.keyBytes;
  }
  return { payload, keys };
}

function assertWithinLimits(chunks: Mutation[][], input: Mutation[]): void {
  assert.deepEqual(chunks.flat(), input, "every mutation once, in order");
  for (const chunk of chunks) {
    const { payload, keys } = totals(chunk);
    assert.ok(chunk.length >= 1 && chunk.length <= LIMITS.mutations);
    assert.ok(payload <= LIMITS.payload, `payload ${payload}`);
    assert.ok(keys <= LIMITS.keyBytes, `keys ${keys}`);
  }
}

Deno.test("pack respects Deno KV's limits of one atomic operation", async (t) => {
  await t.step("at most 1 000 mutations", () => {
    const input = Array.from({ length: 2_500 }, (_, index) => deleteMutation(["u", index]));
    const chunks = pack(input);
    assert.deepEqual(chunks.map((chunk) => chunk.length), [1_000, 1_000, 500]);
    assertWithinLimits(chunks, input);
  });
  await t.step("at most the total mutation size", () => {
    const input = Array.from({ length: 40 }, (_, index) => setMutation(["u", index], "x", 50_000));
    const chunks = pack(input);
    assert.ok(chunks.length > 1);
    assertWithinLimits(chunks, input);
  });
  await t.step("at most the total size of the keys written", () => {
    const prefix = "p".repeat(300);
    const input = Array.from({ length: 1_000 }, (_, index) => setMutation([prefix, index], 1, 16));
    const chunks = pack(input);
    assert.ok(chunks.length > 1);
    assertWithinLimits(chunks, input);
  });
  await t.step("random mutations, committed to Deno KV", async () => {
    const random = seededRandom(7);
    const input: Mutation[] = [];
    for (let index = 0; index < 3_000; index++) {
      const key = ["p".repeat(Math.floor(random() * 400)), index];
      if (random() < 0.3) input.push(deleteMutation(key));
      else {
        const value = "ж".repeat(Math.floor(random() * 20_000));
        input.push(setMutation(key, value, valueBytes(value)));
      }
    }
    const chunks = pack(input);
    assertWithinLimits(chunks, input);
    using kv = await Deno.openKv(":memory:");
    await commitAll(kv, chunks);
  });
  await t.step("a reserve keeps room in the last chunk and is left out of it", () => {
    const input = Array.from({ length: 1_000 }, (_, index) => deleteMutation(["u", index]));
    const reserve = checkedSetRoom(["last"], 16);
    const chunks = pack(input, { reserve });
    // 1 000 mutations fill a chunk: the reserve alone makes the last one.
    assert.deepEqual(chunks.map((chunk) => chunk.length), [1_000, 0]);
    assertWithinLimits([...chunks.slice(0, -1), [...chunks.at(-1)!, reserve]], [
      ...input,
      reserve,
    ]);
    assert.deepEqual(pack([], { reserve }), [[]], "an empty last chunk for the reserve alone");
    assert.deepEqual(pack([]), []);
  });
});

Deno.test("isKeyPart and formatKey follow Deno KV's key parts", () => {
  for (const part of ["a", 1, 1n, true, new Uint8Array(1)]) assert.ok(isKeyPart(part));
  for (const part of [null, undefined, {}, [], Symbol("x")]) assert.ok(!isKeyPart(part));
  assert.equal(formatKey(["bot", 7, 8n, new Uint8Array(2)]), '["bot", 7, 8n, Uint8Array(2)]');
});
