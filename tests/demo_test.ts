// The demo's command line (examples/_demo_flags.ts and examples/demo.ts).

import assert from "node:assert/strict";
import { runScript } from "./_helpers.ts";
import { DEMO_USAGE, parseDemoFlags } from "../examples/_demo_flags.ts";

const DEFAULTS = { updates: 50_000, chats: 5_000, hot: 5, concurrency: 500, latency: 3, seed: 1 };

Deno.test("demo flags take their value after a space or an equals sign", () => {
  assert.deepEqual(parseDemoFlags([]), { help: false, settings: DEFAULTS });
  const expected = { ...DEFAULTS, updates: 2_000, chats: 10, latency: 0.5 };
  assert.deepEqual(parseDemoFlags(["--updates", "2000", "--chats", "10", "--latency", "0.5"]), {
    help: false,
    settings: expected,
  });
  assert.deepEqual(parseDemoFlags(["--updates=2000", "--chats=10", "--latency=0.5"]), {
    help: false,
    settings: expected,
  });
  assert.equal(parseDemoFlags(["--help"]).help, true);
  assert.equal(parseDemoFlags(["-h"]).help, true);
  // A value that starts with a dash needs the equals sign (parseArgs would read a flag).
  assert.deepEqual(parseDemoFlags(["--hot", "0", "--seed=-3"]).settings, {
    ...DEFAULTS,
    hot: 0,
    seed: -3,
  });
});

Deno.test("a bad demo flag or value throws one line naming it", async (t) => {
  const cases: Array<[string[], ErrorConstructor, string]> = [
    [["--bogus"], TypeError, "Unknown option '--bogus'"],
    [["--updates"], TypeError, "Option '--updates <value>' argument missing"],
    [["2000"], TypeError, "Unexpected argument '2000'. This command does not take positional"],
    [
      ["--updates", "--chats=3"],
      TypeError,
      "Option '--updates' argument is ambiguous. Did you forget",
    ],
    [
      ["--updates", "many"],
      TypeError,
      `Cannot run the demo as '--updates' must be a positive integer: current value is "many"`,
    ],
    [
      ["--updates=0"],
      RangeError,
      `Cannot run the demo as '--updates' must be a positive integer: current value is "0"`,
    ],
    [
      ["--latency=-1"],
      RangeError,
      `Cannot run the demo as '--latency' must be a non-negative number: current value is "-1"`,
    ],
    [
      ["--concurrency", "1.5"],
      RangeError,
      `Cannot run the demo as '--concurrency' must be a positive integer: current value is "1.5"`,
    ],
  ];
  for (const [args, type, start] of cases) {
    await t.step(args.join(" "), () => {
      const error = (() => {
        try {
          parseDemoFlags(args);
        } catch (error) {
          return error;
        }
        assert.fail("expected an error");
      })();
      assert.ok(error instanceof type, String(error));
      assert.ok(error.message.startsWith(start), error.message);
      assert.doesNotMatch(error.message, /\n/);
    });
  }
});

Deno.test("the demo answers a bad flag with one line and the usage, and exits with 2", async () => {
  const { code, stdout, stderr } = await runScript(
    new URL("../examples/demo.ts", import.meta.url),
    [
      "--updates",
    ],
  );
  assert.equal(code, 2, stderr);
  assert.equal(
    stderr,
    `Option '--updates <value>' argument missing\n\n${DEMO_USAGE}\n`,
  );
  assert.equal(stdout.length, 0);
});
