// The shape of the library's root modules: imports go one way. A module
// never imports one that (directly or through others) imports it, type-only
// imports included: the contracts private implementations fulfil live below
// them (`_sink_contract.ts`, `_queue_contract.ts`, `_journal_contract.ts`)
// and the public modules re-export them by name.

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** The root modules each root module imports (`import`, `export ... from`, `import()`). */
async function importsOfRoot(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for await (const entry of Deno.readDir(ROOT)) {
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(new URL(entry.name, ROOT));
    const found = text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)"\.\/([\w.-]+\.ts)"/g);
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
  const graph = await importsOfRoot();
  assert.ok(graph.size > 40, `read ${graph.size} root modules`);
  assert.ok(graph.get("sink.ts")!.includes("_sink_core.ts"), "the import pattern finds imports");
  assert.deepEqual(cyclesOf(graph).map((cycle) => cycle.join(" -> ")), []);
});

Deno.test("the cycle check finds a cycle, type-only and through re-exports too", () => {
  const graph = new Map([
    ["sink.ts", ["_core.ts"]],
    ["_core.ts", ["_books.ts"]],
    ["_books.ts", ["sink.ts"]],
    ["mod.ts", ["sink.ts"]],
  ]);
  assert.deepEqual(cyclesOf(graph), [["_books.ts", "sink.ts", "_core.ts", "_books.ts"]]);
  assert.deepEqual(cyclesOf(new Map([["a.ts", ["b.ts"]], ["b.ts", []]])), []);
});
