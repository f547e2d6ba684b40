// The webhook demo (examples/demo_webhook.ts), run as `deno task demo:webhook` runs it.

import assert from "node:assert/strict";

async function demo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = new URL("../examples/demo_webhook.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-kv",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      "--allow-run",
      "--allow-write=/tmp",
      script,
      ...args,
    ],
    env: { NO_COLOR: "1", NODE_OPTIONS: "--no-warnings" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("the webhook demo runs 2 worker processes on a KV file and ends with PASS", async () => {
  const { code, stdout, stderr } = await demo([
    "--updates=600",
    "--chats=60",
    "--hot=2",
    "--hot-updates=30",
  ]);
  assert.equal(code, 0, stdout + stderr);
  assert.match(stdout, /2 runFromKv worker processes/);
  assert.match(stdout, /handled \d+\/600/, "live progress");
  assert.match(stdout, /Handled {3}600 updates/);
  assert.match(
    stdout,
    /PASS {6}every update handled exactly once, in order per chat, no session write lost/,
  );
  assert.doesNotMatch(stdout + stderr, /TEST-fake-token/);
});

Deno.test("the webhook demo rejects a bad flag with exit code 2", async () => {
  const { code, stderr } = await demo(["--workers=0"]);
  assert.equal(code, 2);
  assert.match(stderr, /'--workers' must be an integer >= 1: current value is "0"/);
});
