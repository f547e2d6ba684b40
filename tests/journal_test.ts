import assert from "node:assert/strict";
import { type JournalReport, kvJournal, memoryJournal, type UpdateJournal } from "../journal.ts";

interface TestUpdate {
  update_id: number;
  message?: { text: string };
}

/** Journals over one storage: `make()` again is a restart (same object for memory). */
type Make = () => UpdateJournal<TestUpdate>;

interface Kind {
  name: string;
  use(body: (make: Make) => Promise<void>): Promise<void>;
}

const kinds: Kind[] = [
  {
    name: "memoryJournal",
    use: async (body) => {
      const journal = memoryJournal<TestUpdate>();
      await body(() => journal);
    },
  },
  {
    name: "kvJournal",
    use: async (body) => {
      const kv = await Deno.openKv(":memory:");
      try {
        await body(() => kvJournal<TestUpdate>(kv));
      } finally {
        kv.close();
      }
    },
  },
];

function updates(...ids: number[]): TestUpdate[] {
  return ids.map((id) => ({ update_id: id, message: { text: `update ${id}` } }));
}

async function idsAfterRestart(make: Make): Promise<number[]> {
  return (await make().open()).unfinished.map((update) => update.update_id);
}

const cases: Array<[string, (make: Make) => Promise<void>]> = [
  ["an empty journal opens with nothing to replay and no last id", async (make) => {
    assert.deepEqual(await make().open(), { unfinished: [], lastId: undefined });
  }],
  ["open() replays stored updates in update_id order, however they were stored", async (make) => {
    const journal = make();
    await journal.open();
    await journal.store(updates(5, 3));
    await journal.store(updates(4, 1, 9));
    const state = await make().open();
    assert.deepEqual(state.unfinished, updates(1, 3, 4, 5, 9));
    assert.equal(state.lastId, 9);
  }],
  ["finish() removes updates, and the last id survives it", async (make) => {
    const journal = make();
    await journal.open();
    await journal.store(updates(1, 2, 3, 4, 5));
    await journal.finish([2, 4]);
    assert.deepEqual(await idsAfterRestart(make), [1, 3, 5]);
    await journal.finish([1, 3, 5]);
    assert.deepEqual(await make().open(), { unfinished: [], lastId: 5 });
  }],
  ["the last id never goes down when a lower batch is stored", async (make) => {
    const journal = make();
    await journal.store(updates(10));
    await journal.store(updates(7));
    assert.equal((await make().open()).lastId, 10);
  }],
  ["compact() keeps what is unfinished and the last id", async (make) => {
    const journal = make();
    await journal.open();
    await journal.store(updates(1, 2, 3));
    await journal.finish([1, 3]);
    await journal.compact();
    assert.deepEqual(await make().open(), { unfinished: updates(2), lastId: 3 });
  }],
  ["store() and finish() are idempotent", async (make) => {
    const journal = make();
    await journal.open();
    await journal.store(updates(1, 2));
    await journal.store(updates(2, 1, 2));
    assert.deepEqual(await idsAfterRestart(make), [1, 2]);
    await journal.finish([1, 1]);
    await journal.finish([1, 42]);
    await journal.finish([]);
    await journal.store([]);
    assert.deepEqual(await make().open(), { unfinished: updates(2), lastId: 2 });
  }],
  ["replayed updates are copies, not the objects the bot may have changed", async (make) => {
    const journal = make();
    const [update] = updates(1);
    await journal.store([update!]);
    update!.message!.text = "changed by middleware";
    assert.equal((await make().open()).unfinished[0]!.message!.text, "update 1");
  }],
  ["store() and finish() reject bad input with a clear TypeError", async (make) => {
    const journal = make();
    await assert.rejects(journal.store({} as never), {
      name: "TypeError",
      message: /as 'updates' must be an array: current value is an object$/,
    });
    await assert.rejects(journal.store([{ update_id: 1 }, { update_id: "2" }] as never), {
      name: "TypeError",
      message: /as 'updates\[1\]\.update_id' must be an integer: current value is "2"$/,
    });
    await assert.rejects(journal.finish([1, 2.5]), {
      name: "TypeError",
      message: /as 'updateIds\[1\]' must be an integer: current value is 2\.5$/,
    });
    assert.deepEqual(await make().open(), { unfinished: [], lastId: undefined });
  }],
];

for (const [name, body] of cases) {
  Deno.test(name, async (t) => {
    for (const kind of kinds) {
      await t.step(kind.name, () => kind.use(body));
    }
  });
}

Deno.test("memoryJournal's size counts the unfinished updates", async () => {
  const journal = memoryJournal<TestUpdate>();
  await journal.store(updates(1, 2, 3));
  await journal.finish([2]);
  assert.equal(journal.size, 2);
});

/** Runs `body` with an in-memory KV database that is closed afterwards. */
async function withKv(body: (kv: Deno.Kv) => Promise<void>): Promise<void> {
  const kv = await Deno.openKv(":memory:");
  try {
    await body(kv);
  } finally {
    kv.close();
  }
}

async function keys(kv: Deno.Kv, prefix: Deno.KvKey): Promise<Deno.KvKey[]> {
  return await Array.fromAsync(kv.list({ prefix }), (entry) => entry.key);
}

Deno.test("kvJournal keeps updates at [...prefix, 'update', id] and the last id at [...prefix, 'last']", async () => {
  await withKv(async (kv) => {
    const journal = kvJournal<TestUpdate>(kv, { prefix: ["bots", 7] });
    await journal.store(updates(2, 1));
    assert.deepEqual(await keys(kv, []), [
      ["bots", 7, "last"],
      ["bots", 7, "update", 1],
      ["bots", 7, "update", 2],
    ]);
    assert.deepEqual((await kv.get(["bots", 7, "update", 2])).value, updates(2)[0]);
    assert.equal((await kv.get(["bots", 7, "last"])).value, 2);
    assert.deepEqual(await kvJournal(kv).open(), { unfinished: [], lastId: undefined });
  });
});

Deno.test("kvJournal moves corrupt and foreign entries aside, reports them, and opens clean next time", async () => {
  await withKv(async (kv) => {
    const reports: JournalReport[] = [];
    const reporter = (report: JournalReport) => void reports.push(report);
    const base = ["grammyx-runner", "update"];
    await kvJournal<TestUpdate>(kv).store(updates(3, 5));
    await kv.set([...base, "five"], { update_id: 5 });
    await kv.set([...base, 4], { update_id: 44 });
    await kv.set([...base, 6], "not an update");
    await kv.set([...base, 7], null);
    await kv.set([...base, 8, "x", 9], { update_id: 8 });

    const state = await kvJournal<TestUpdate>(kv, { reporter }).open();
    assert.deepEqual(state, { unfinished: updates(3, 5), lastId: 5 });
    assert.equal(reports.length, 5, reports.map((report) => report.message).join("\n"));
    assert.ok(reports.every((report) => report.source === "journal"));
    assert.match(
      reports.map((report) => report.message).join("\n"),
      /Moved the journal entry \["grammyx-runner", "update", 4\] aside to \["grammyx-runner", "corrupt", 4\] without running it, as its value is not an update with update_id 4/,
    );
    assert.deepEqual(await keys(kv, ["grammyx-runner", "corrupt"]), [
      ["grammyx-runner", "corrupt", "five"], // strings sort before numbers in KV
      ["grammyx-runner", "corrupt", 4],
      ["grammyx-runner", "corrupt", 6],
      ["grammyx-runner", "corrupt", 7],
      ["grammyx-runner", "corrupt", 8, "x", 9],
    ]);
    assert.deepEqual((await kv.get(["grammyx-runner", "corrupt", 4])).value, { update_id: 44 });

    reports.length = 0;
    const again = await kvJournal<TestUpdate>(kv, { reporter }).open();
    assert.deepEqual(again, { unfinished: updates(3, 5), lastId: 5 });
    assert.deepEqual(reports, []);
  });
});

Deno.test("kvJournal's compact() moves corrupt entries aside too", async () => {
  await withKv(async (kv) => {
    const reports: JournalReport[] = [];
    const journal = kvJournal<TestUpdate>(kv, { reporter: (report) => void reports.push(report) });
    await journal.store(updates(1));
    await kv.set(["grammyx-runner", "update", 2], { update_id: 3 });
    await journal.compact();
    assert.equal(reports.length, 1);
    assert.deepEqual(await keys(kv, ["grammyx-runner", "update"]), [[
      "grammyx-runner",
      "update",
      1,
    ]]);
  });
});

Deno.test("kvJournal's default reporter prints one line on stderr", async () => {
  await withKv(async (kv) => {
    await kv.set(["grammyx-runner", "update", 1], "junk");
    const lines: unknown[][] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void lines.push(args);
    try {
      await kvJournal(kv).open();
    } finally {
      console.error = original;
    }
    assert.equal(lines.length, 1);
    assert.match(String(lines[0]), /^\[grammyx\/runner\] Moved the journal entry/);
  });
});

Deno.test("kvJournal rejects a last id that is not a number with a TypeError naming the key", async () => {
  await withKv(async (kv) => {
    await kv.set(["grammyx-runner", "last"], "12");
    const journal = kvJournal<TestUpdate>(kv);
    const message =
      /the entry \["grammyx-runner", "last"\] must be an integer, the highest update id stored \(delete the entry if something else wrote it\): current value is "12"$/;
    await assert.rejects(journal.open(), { name: "TypeError", message });
    await assert.rejects(journal.store(updates(1)), { name: "TypeError", message });
  });
});

Deno.test("kvJournal splits batches beyond Deno KV's limits of one atomic operation", async (t) => {
  await t.step("2 500 updates: more than 1 000 mutations", async () => {
    await withKv(async (kv) => {
      const ids = Array.from({ length: 2_500 }, (_, index) => index + 1);
      const journal = kvJournal<TestUpdate>(kv);
      await journal.store(updates(...ids));
      const state = await kvJournal<TestUpdate>(kv).open();
      assert.equal(state.unfinished.length, 2_500);
      assert.equal(state.lastId, 2_500);
      await journal.finish(ids);
      assert.deepEqual(await keys(kv, ["grammyx-runner", "update"]), []);
    });
  });
  await t.step("100 updates of 20 KB: more than 800 KB", async () => {
    await withKv(async (kv) => {
      const big = Array.from({ length: 100 }, (_, index) => ({
        update_id: index + 1,
        message: { text: "ж".repeat(10_000) },
      }));
      const journal = kvJournal<TestUpdate>(kv);
      await journal.store(big);
      assert.deepEqual((await kvJournal<TestUpdate>(kv).open()).unfinished, big);
    });
  });
  await t.step("1 000 updates under a 300-byte prefix: more than 80 KB of keys", async () => {
    await withKv(async (kv) => {
      const prefix = ["p".repeat(300)];
      const ids = Array.from({ length: 1_000 }, (_, index) => index + 1);
      await kvJournal<TestUpdate>(kv, { prefix }).store(updates(...ids));
      assert.equal((await kvJournal<TestUpdate>(kv, { prefix }).open()).unfinished.length, 1_000);
    });
  });
  await t.step("an update larger than one KV value (64 KB) is stored in parts", async () => {
    await withKv(async (kv) => {
      const huge = { update_id: 9, message: { text: "😀 ".repeat(60_000) } };
      const journal = kvJournal<TestUpdate>(kv);
      await journal.open();
      await journal.store([...updates(8), huge]);
      const state = await kvJournal<TestUpdate>(kv).open();
      assert.deepEqual(state.unfinished, [...updates(8), huge]);
      assert.ok((await keys(kv, ["grammyx-runner", "update", 9])).length > 2, "stored in parts");
      await journal.finish([9]);
      assert.deepEqual(await keys(kv, ["grammyx-runner", "update", 9]), [], "parts removed too");
    });
  });
});

Deno.test("kvJournal removes the parts a cut-short store left and moves incomplete ones aside", async () => {
  await withKv(async (kv) => {
    const reports: JournalReport[] = [];
    const reporter = (report: JournalReport) => void reports.push(report);
    const base = ["grammyx-runner", "update"];
    // Parts without their entry: a store that a crash cut short.
    await kv.set([...base, 1, 0], '{"update_id":');
    // An entry naming 2 parts of which one is missing.
    await kv.set([...base, 2], { update_id: 2, "grammyx-runner:parts": 2 });
    await kv.set([...base, 2, 0], '{"update_id":2}');
    const state = await kvJournal<TestUpdate>(kv, { reporter }).open();
    assert.deepEqual(state, { unfinished: [], lastId: undefined });
    assert.deepEqual(await keys(kv, base), []);
    assert.equal(reports.length, 2, "the entry and its one part were moved aside");
  });
});

Deno.test("kvJournal raises the last id to stored entries above it (a store cut short before 'last')", async () => {
  await withKv(async (kv) => {
    await kvJournal<TestUpdate>(kv).store(updates(1));
    await kv.set(["grammyx-runner", "update", 7], updates(7)[0]);
    assert.deepEqual(await kvJournal<TestUpdate>(kv).open(), {
      unfinished: updates(1, 7),
      lastId: 7,
    });
  });
});

Deno.test("kvJournal keeps the highest last id when two journals write the same prefix", async () => {
  await withKv(async (kv) => {
    const first = kvJournal<TestUpdate>(kv);
    const second = kvJournal<TestUpdate>(kv);
    await first.open();
    await second.open();
    await second.store(updates(100));
    await first.store(updates(50));
    assert.equal((await kv.get(["grammyx-runner", "last"])).value, 100);
    assert.deepEqual(await idsAfterRestart(() => kvJournal(kv)), [50, 100]);
  });
});

Deno.test("kvJournal journals with different prefixes do not see each other", async () => {
  await withKv(async (kv) => {
    await kvJournal<TestUpdate>(kv, { prefix: ["a"] }).store(updates(1));
    await kvJournal<TestUpdate>(kv, { prefix: ["b"] }).store(updates(2));
    assert.deepEqual(await idsAfterRestart(() => kvJournal(kv, { prefix: ["a"] })), [1]);
    assert.deepEqual(await idsAfterRestart(() => kvJournal(kv, { prefix: ["b"] })), [2]);
  });
});

Deno.test("kvJournal rejects bad arguments with errors naming the option and the value", async () => {
  assert.throws(() => kvJournal(null as never), {
    name: "TypeError",
    message: "Cannot create KV journal as 'kv' must be a Deno.Kv: current value is null",
  });
  assert.throws(() => kvJournal({} as never), {
    name: "TypeError",
    message: "Cannot create KV journal as 'kv' must be a Deno.Kv: current value is an object",
  });
  await withKv((kv) => {
    assert.throws(() => kvJournal(kv, "x" as never), {
      name: "TypeError",
      message: `Cannot create KV journal as 'options' must be an object: current value is "x"`,
    });
    assert.throws(() => kvJournal(kv, { prefix: "bot" as never }), {
      name: "TypeError",
      message:
        `Cannot create KV journal as 'prefix' must be an array of KV key parts: current value is "bot"`,
    });
    assert.throws(() => kvJournal(kv, { prefix: [{}] as never }), {
      name: "TypeError",
      message: /'prefix' must be an array of KV key parts: current value is an array$/,
    });
    assert.throws(() => kvJournal(kv, { prefix: [] }), {
      name: "RangeError",
      message:
        "Cannot create KV journal as 'prefix' must hold at least one key part: current value is []",
    });
    assert.throws(() => kvJournal(kv, { reporter: 5 as never }), {
      name: "TypeError",
      message: "Cannot create KV journal as 'reporter' must be a function: current value is 5",
    });
    assert.throws(() => kvJournal(kv, { prefx: ["bot"] } as never), {
      name: "TypeError",
      message: "Cannot create KV journal as 'prefx' is not an option: did you mean 'prefix'?",
    });
    assert.throws(() => kvJournal(kv, { Reporter: () => {} } as never), {
      name: "TypeError",
      message: "Cannot create KV journal as 'Reporter' is not an option: did you mean 'reporter'?",
    });
    assert.throws(() => kvJournal(kv, { expireIn: 1_000 } as never), {
      name: "TypeError",
      message: "Cannot create KV journal as 'expireIn' is not an option",
    });
    return Promise.resolve();
  });
});
