import assert from "node:assert/strict";
import { knownOptions } from "../_validate.ts";

interface Options {
  concurrency?: number;
  maxPending?: number;
  timeout?: { milliseconds: number; handler: () => void };
}

const NAMES = ["concurrency", "maxPending", "timeout"] as const;

/** Calls `knownOptions` with options a caller could pass in plain JavaScript. */
function check(options: object, known: readonly string[] = NAMES, parent?: string): void {
  knownOptions("Cannot create sink", options as Record<string, unknown>, known, parent);
}

Deno.test("knownOptions accepts known names, undefined values and no options", () => {
  check({});
  check({ concurrency: 1, maxPending: undefined });
  knownOptions<Options>("Cannot create sink", undefined, NAMES);
});

Deno.test("knownOptions names an unknown option and suggests the nearest known one", async (t) => {
  const cases: [string, object, string][] = [
    ["a missing letter", { concurency: 10 }, "concurrency"],
    ["swapped neighbours", { concurrnecy: 10 }, "concurrency"],
    ["another case", { maxpending: 10 }, "maxPending"],
    ["an extra letter", { timeoutt: {} }, "timeout"],
  ];
  for (const [name, options, nearest] of cases) {
    await t.step(name, () => {
      const [unknown] = Object.keys(options);
      assert.throws(() => check(options), {
        name: "TypeError",
        message: `Cannot create sink as '${unknown}' is not an option: did you mean '${nearest}'?`,
      });
    });
  }
});

Deno.test("knownOptions suggests nothing when no known name is close", () => {
  for (const unknown of ["foo", "speedTrafficBalance", "x", "limit"]) {
    assert.throws(() => check({ [unknown]: 1 }), {
      name: "TypeError",
      message: `Cannot create sink as '${unknown}' is not an option`,
    });
  }
});

Deno.test("knownOptions shows a nested option with the name of its parent", () => {
  assert.throws(() => check({ milisecond: 5 }, ["milliseconds", "handler"], "timeout"), {
    name: "TypeError",
    message:
      "Cannot create sink as 'timeout.milisecond' is not an option: did you mean 'timeout.milliseconds'?",
  });
  assert.throws(() => check({ onTimeout: 5 }, ["milliseconds", "handler"], "timeout"), {
    name: "TypeError",
    message: "Cannot create sink as 'timeout.onTimeout' is not an option",
  });
});

Deno.test("knownOptions reports the first unknown option", () => {
  assert.throws(() => check({ concurrency: 1, concurency: 2, maxPendin: 3 }), {
    message: /'concurency'/,
  });
});
