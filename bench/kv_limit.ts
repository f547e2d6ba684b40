/**
 * `deno task --cwd bench kv-limit`: the bare rate of atomic commits on a Deno
 * KV file (SQLite), shaped like the webhook ingress's store of one update (a
 * check that its dedupe record is absent, the record with a 24 h expiry, the
 * inbox entry, the lane's sentinel), from 1 and from 40 concurrent writers in
 * one process. It is the ceiling of `webhookToKv` → `runFromKv` on one file:
 * every update costs the ingress one such commit, and the worker about two
 * more (its lease and release, its outcome shared with others in a group
 * commit).
 *
 * ```sh
 * deno task --cwd bench kv-limit
 * deno task --cwd bench kv-limit --seconds=5
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { removeKvFiles } from "./_kv.ts";

/**
 * Commits per second from `writers` concurrent loops for `seconds` on a fresh KV file.
 *
 * @param writers Concurrent commit loops
 * @param seconds How long to measure
 * @returns Commits per second
 */
export async function commitRate(writers: number, seconds: number): Promise<number> {
  const path = `/tmp/grammyx-kv-limit-${crypto.randomUUID()}.kv`;
  const kv = await Deno.openKv(path);
  try {
    let next = 0;
    let commits = 0;
    const end = Date.now() + seconds * 1_000;
    await Promise.all(Array.from({ length: writers }, async () => {
      while (Date.now() < end) {
        const id = next++;
        const lane = `k:${id % 500}`;
        const seen = ["q", "seen", id];
        const result = await kv.atomic()
          .check({ key: seen, versionstamp: null })
          .set(seen, true, { expireIn: 86_400_000 })
          .set(["q", "inbox", lane, id], { update_id: id, message: { text: "x".repeat(200) } })
          .sum(["q", "lane", lane], 1n)
          .commit();
        if (result.ok) commits++;
      }
    }));
    return commits / seconds;
  } finally {
    kv.close();
    removeKvFiles(path);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { seconds: { type: "string", default: "3" } } });
  const seconds = Number(values.seconds);
  console.log("| writers | atomic commits/s on one KV file |");
  console.log("| ------: | ------------------------------: |");
  for (const writers of [1, 40]) {
    console.log(`| ${writers} | ${Math.round(await commitRate(writers, seconds))} |`);
  }
}
