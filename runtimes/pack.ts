// Lays out @grammyx/runner as an npm package for the Node and Bun smoke runs:
//
//   deno run --allow-read --allow-write runtimes/pack.ts <out dir> [more files]
//
// It puts the smoke suite (and each further file, a path from the repository
// root) into <out dir>/smoke/.
//
// How Node and Bun find `grammy`: on JSR, the package's npm build rewrites
// each `npm:name@range` import to the bare `name` and lists `name: range` as
// a dependency; Node and Bun then resolve it from node_modules. This script
// does the same rewrite on a copy of the published modules (the root *.ts
// files), so the smoke suite loads the code that users get, with grammY from
// npm, and no loader hooks, tsconfig paths or tsx between the two. The copy
// stays TypeScript: Node 22 strips the types itself (the sources are
// erasable-syntax-only), Bun runs TypeScript as is. Node does not strip types
// under node_modules, so the copy is the package root (not an installed
// dependency), and the smoke suite, in its smoke/ folder, imports it by its
// name through the package's self-reference (`@grammyx/runner/testing`, ...).

const [out, ...more] = Deno.args;
if (out === undefined) throw new TypeError("Usage: pack.ts <out dir> [more files]");
const root = new URL("../", import.meta.url);

const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root))) as {
  name: string;
  version: string;
  exports: Record<string, string>;
};

/** `npm:name@range/sub` (name possibly scoped) → the bare `name/sub`, noting `name: range`. */
const NPM = /(["'])npm:((?:@[^/@"']+\/)?[^/@"']+)@([^/"']+)((?:\/[^"']*)?)\1/g;
const dependencies: Record<string, string> = {};

await Deno.mkdir(`${out}/smoke`, { recursive: true });
for await (const entry of Deno.readDir(root)) {
  if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
  const source = await Deno.readTextFile(new URL(entry.name, root));
  const rewritten = source.replace(NPM, (_, quote, name, range, sub) => {
    if (dependencies[name] !== undefined && dependencies[name] !== range) {
      throw new Error(`${name} is imported with two ranges: ${dependencies[name]} and ${range}`);
    }
    dependencies[name] = range;
    return `${quote}${name}${sub}${quote}`;
  });
  await Deno.writeTextFile(`${out}/${entry.name}`, rewritten);
}
for (const path of ["runtimes/smoke.ts", "runtimes/smoke_worker.ts", ...more]) {
  await Deno.copyFile(new URL(path, root), `${out}/smoke/${path.split("/").pop()}`);
}
const packageJson = {
  name: config.name,
  version: config.version,
  private: true,
  type: "module",
  exports: config.exports,
  dependencies,
};
await Deno.writeTextFile(`${out}/package.json`, JSON.stringify(packageJson, null, 2) + "\n");
console.log(`Packed ${config.name} into ${out} with ${JSON.stringify(dependencies)}`);
