// The shape of the library's root modules: imports go one way. A module
// never imports one that (directly or through others) imports it, type-only
// imports included: the contracts private implementations fulfil live below
// them (`_sink_contract.ts`, `_queue_contract.ts`, `_journal_contract.ts`)
// and the public modules re-export them by name.

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/**
 * The modules of `dir` each module there imports: `import ... from`,
 * `import type`, `export ... from`, `import "./x.ts"` and `import()`.
 */
async function importsIn(dir: URL): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(new URL(entry.name, dir));
    const found = text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*"\.\/([\w.-]+\.ts)"/g);
    graph.set(entry.name, [...new Set([...found].map((match) => match[1]!))]);
  }
  return graph;
}

/** Every cycle reachable in `graph`, each as the path that closes it. */
function cyclesOf(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const done = new Set<string>();
  const visit = (name: string, path: string[]) => {
    const at = path.indexOf(name);
    if (at !== -1) return void cycles.push([...path.slice(at), name]);
    if (done.has(name)) return;
    for (const next of graph.get(name) ?? []) visit(next, [...path, name]);
    done.add(name);
  };
  for (const name of [...graph.keys()].toSorted()) visit(name, []);
  return cycles;
}

Deno.test("no root module imports a module that imports it", async () => {
  const graph = await importsIn(ROOT);
  assert.ok(graph.size > 40, `read ${graph.size} root modules`);
  assert.ok(graph.get("sink.ts")!.includes("_sink_core.ts"), "the import pattern finds imports");
  assert.deepEqual(cyclesOf(graph).map((cycle) => cycle.join(" -> ")), []);
});

Deno.test("the check finds a cycle through type-only imports, re-exports and side-effect imports", async () => {
  const dir = await Deno.makeTempDir({ prefix: "layout-" });
  try {
    const files: Record<string, string> = {
      "sink.ts": 'import { core } from "./_core.ts";\nexport type { Stats } from "./_books.ts";\n',
      "_core.ts": 'import "./_side.ts";\nexport const core = 1;\n',
      "_side.ts": 'import type {\n  Options,\n} from "./sink.ts";\n',
      "_books.ts": "export interface Stats {}\n",
      "mod.ts": 'export { core } from "./_core.ts";\nconst later = () => import("./sink.ts");\n',
    };
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    const graph = await importsIn(new URL(`file://${dir}/`));
    assert.deepEqual(Object.fromEntries([...graph].toSorted(([a], [b]) => a.localeCompare(b))), {
      "_books.ts": [],
      "_core.ts": ["_side.ts"],
      "_side.ts": ["sink.ts"],
      "mod.ts": ["_core.ts", "sink.ts"],
      "sink.ts": ["_core.ts", "_books.ts"],
    });
    assert.deepEqual(cyclesOf(graph), [["_core.ts", "_side.ts", "sink.ts", "_core.ts"]]);
    graph.set("_side.ts", []);
    assert.deepEqual(cyclesOf(graph), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
