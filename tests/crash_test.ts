// kill -9 under load: a bot in a child process (tests/fixtures/crash_bot.ts)
// polls the fake Bot API that lives here, and is killed and restarted several
// times. What it sent back with sendMessage (the update id, after the work) is
// the record of what was handled.

import assert from "node:assert/strict";
import { FakeBotApi } from "../testing.ts";
import { random, sleep } from "./_helpers.ts";

const UPDATES = 2_000;
const KILLS = 4;
/** The child's sink holds at most 40 updates taken and not finished (`maxPending`). */
const MAX_PENDING = 40;
/**
 * What may run twice after a kill. With the journal: the updates in flight
 * (taken and not finished, or finished and not yet recorded: the runner
 * records finished ids every 10 ms or 100 ids, so one batch being written
 * and one being collected). With `confirm: "handled"`: the updates taken
 * above the oldest unfinished one, fewer than one getUpdates answer (100).
 */
const BOUNDS = { journal: MAX_PENDING + 2 * 100, handled: 100 } as const;

const root = new URL("..", import.meta.url);
const fixture = new URL("fixtures/crash_bot.ts", import.meta.url).pathname;

type Mode = "journal" | "handled" | "fetched";

interface Outcome {
  /** How many times each update id was handled. */
  handled: Map<number, number>;
  /** Per kill, the updates handled again after the restart that had been handled before it. */
  duplicatesPerKill: number[];
  /** Ids never handled. */
  lost: number[];
  /** What the bot printed on stderr, over all its runs. */
  diagnostics: string;
}

/** Starts the bot; `output` settles when it exits, with its stderr for diagnostics. */
function startBot(api: FakeBotApi, mode: Mode, kvPath: string, writable: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--unstable-kv",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      `--allow-write=${writable}`,
      fixture,
      api.apiRoot,
      api.token,
      mode,
      kvPath,
    ],
    cwd: root,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const output = child.output().then((result) => ({
    code: result.code,
    signal: result.signal,
    // grammY's npm build makes Node's punycode warning: not ours to report.
    stderr: new TextDecoder().decode(result.stderr).split("\n")
      .filter((line) => line !== "" && !line.includes("DEP0040")).join("\n"),
  }));
  return { child, output };
}

async function waitFor(condition: () => boolean, limit: number, what: string): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > limit) {
      throw new Error(`Timed out after ${limit} ms waiting for ${what}`);
    }
    await sleep(1);
  }
}

/**
 * Pushes the updates, kills the bot KILLS times under load at seeded points,
 * restarting it each time, then lets the last run finish and stops it with
 * SIGTERM.
 */
async function crashRun(mode: Mode, seed: number): Promise<Outcome> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "grammyx_crash_" });
  try {
    await using api = await FakeBotApi.start({ seed });
    const ids = api.pushMessages(UPDATES, { chats: 50 });
    const rng = random(seed);
    const kvPath = `${dir}/journal.kv`;
    const done = new Set<number>();
    let read = 0;
    const distinct = () => {
      for (; read < api.sentMessages.length; read++) done.add(Number(api.sentMessages[read]!.text));
      return done.size;
    };
    /** `api.sentMessages.length` after each kill: where each run's messages end. */
    const runEnds: number[] = [];
    const diagnostics: string[] = [];

    for (let kill = 0; kill < KILLS; kill++) {
      // One kill in each fifth of the run but the last, at a seeded point.
      const share = UPDATES / (KILLS + 1);
      const at = Math.floor(share * (kill + 0.5 + 0.5 * rng()));
      const bot = startBot(api, mode, kvPath, dir);
      try {
        await waitFor(() => distinct() >= at, 30_000, `${at} updates handled (kill ${kill + 1})`);
      } finally {
        bot.child.kill("SIGKILL");
      }
      const { signal, stderr } = await bot.output;
      diagnostics.push(stderr);
      assert.equal(signal, "SIGKILL", `the bot must still run when killed: ${stderr}`);
      runEnds.push(api.sentMessages.length);
    }

    // The journal and "handled" modes end with every update handled; "fetched"
    // loses some, so the last run also ends once Telegram has nothing left and
    // the bot went quiet.
    const last = startBot(api, mode, kvPath, dir);
    let count = -1;
    let quietSince = Date.now();
    try {
      await waitFor(
        () => {
          if (api.sentMessages.length !== count) {
            [count, quietSince] = [api.sentMessages.length, Date.now()];
          }
          return distinct() === UPDATES || (api.pending() === 0 && Date.now() - quietSince > 500);
        },
        30_000,
        "the last run",
      );
    } catch (error) {
      last.child.kill("SIGKILL");
      await last.output;
      throw error;
    }
    last.child.kill("SIGTERM");
    const { code, stderr } = await last.output;
    diagnostics.push(stderr);
    assert.equal(code, 0, `the bot must stop cleanly on SIGTERM: ${stderr}`);

    // A duplicate counts against the kill before the run that sent it again.
    const handled = new Map<number, number>();
    const duplicatesPerKill = runEnds.map(() => 0);
    let run = 0;
    api.sentMessages.forEach((message, index) => {
      while (run < runEnds.length && index >= runEnds[run]!) run++;
      const id = Number(message.text);
      if (handled.has(id)) duplicatesPerKill[run - 1]!++;
      handled.set(id, (handled.get(id) ?? 0) + 1);
    });
    const lost = ids.filter((id) => !handled.has(id));
    return {
      handled,
      duplicatesPerKill,
      lost,
      diagnostics: diagnostics.filter(Boolean).join("\n"),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function describe(mode: Mode, outcome: Outcome): string {
  const handled = [...outcome.handled.values()].reduce((sum, n) => sum + n, 0);
  const duplicates = [...outcome.handled].filter(([, n]) => n > 1).map(([id, n]) => `${id}×${n}`);
  return [
    `${mode}: ${outcome.handled.size} of ${UPDATES} updates handled (${handled} runs),`,
    `duplicates per kill [${outcome.duplicatesPerKill.join(", ")}],`,
    `lost ${outcome.lost.length}${
      outcome.lost.length > 0 ? ` (${outcome.lost.slice(0, 20).join(", ")}…)` : ""
    };`,
    `duplicated: ${duplicates.slice(0, 50).join(" ")}${duplicates.length > 50 ? " …" : ""}`,
    outcome.diagnostics === "" ? "" : `\nbot stderr:\n${outcome.diagnostics.slice(-2_000)}`,
  ].join(" ");
}

Deno.test("kill -9 under load with a KV journal: nothing is lost, and only updates in flight at a kill run twice", async () => {
  const outcome = await crashRun("journal", 11);
  const report = describe("journal", outcome);
  assert.deepEqual(outcome.lost, [], report);
  assert.ok(outcome.duplicatesPerKill.every((duplicates) => duplicates <= BOUNDS.journal), report);
});

Deno.test('kill -9 under load with confirm: "handled": nothing is lost, and only updates in flight at a kill run twice', async () => {
  const outcome = await crashRun("handled", 12);
  const report = describe("handled", outcome);
  assert.deepEqual(outcome.lost, [], report);
  assert.ok(outcome.duplicatesPerKill.every((duplicates) => duplicates <= BOUNDS.handled), report);
});

Deno.test('kill -9 under load with confirm: "fetched" (control): the run goes on, and may lose what was in flight', async () => {
  const outcome = await crashRun("fetched", 13);
  const report = describe("fetched", outcome);
  assert.ok(outcome.handled.size > UPDATES / 2, report);
  assert.equal(outcome.handled.size + outcome.lost.length, UPDATES, report);
});
