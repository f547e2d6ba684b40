/**
 * Removes the files of a local Deno KV database: the file itself and SQLite's
 * `-shm` and `-wal` files. Kept apart from the subjects so that a process
 * that only cleans up loads nothing else.
 *
 * ```ts ignore
 * import { removeKvFiles } from "./_kv.ts";
 *
 * removeKvFiles("/tmp/grammyx-bench-1.kv");
 * ```
 *
 * @module
 */

/**
 * Removes a Deno KV database's files; those already gone are skipped.
 *
 * @param path The KV file
 */
export function removeKvFiles(path: string): void {
  for (const suffix of ["", "-shm", "-wal"]) {
    try {
      Deno.removeSync(path + suffix);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
}
