/**
 * The one place the project names node-redis (the official `redis` client,
 * v5), with a full `npm:` specifier. The library itself only needs a client's
 * shape (`_redis_scripts.ts`); the tests, examples and benchmarks create
 * clients with this.
 *
 * @module
 */

export { createClient } from "npm:redis@^5.12.1";
export type { RedisClientType } from "npm:redis@^5.12.1";
