// The Redis side of the Redis Streams queue engine: its keys, its Lua
// scripts, and the raw commands it sends. Each script runs atomically on the
// server, so storing a batch, renewing and rebalancing leases, and recording
// progress are each one round trip. Not exported by mod.ts.
//
// Keys, under `prefix` (e.g. "grammyx:"):
//   {prefix}p:{n}      stream of partition n; entry id `U-0` for update U
//                       (`T-k` if U arrives below the top T, e.g. a webhook
//                       delivery that overtook an older one of another chat)
//   {prefix}ids        sorted set: the last `window` update ids stored, for
//                       dedupe (score: store order)
//   {prefix}meta       hash: `n` (store counter), `last` (highest id stored),
//                       `top:{n}` (last entry's time part of partition n)
//   {prefix}lease:{n}  the worker id holding partition n, with an expiry
//   {prefix}workers    sorted set: live workers, score = heartbeat expiry
//
// Progress is the stream itself: a partition's holder trims (XTRIM MINID)
// everything below its oldest unfinished entry, so what is left is what was
// not recorded as finished, and the next holder starts at the first entry.

/** What the engine needs of a node-redis client (v5; `createClient()`). */
export interface RedisCommands {
  /** Sends one command as its words; resolves with the reply. */
  sendCommand(args: string[]): Promise<unknown>;
}

/** A node-redis client: commands, plus a second connection for blocking reads. */
export interface RedisClient extends RedisCommands {
  /** A new, unconnected client with the same options (node-redis `duplicate()`). */
  duplicate(): RedisConnection;
}

/** A connection the engine opens and closes itself (from `duplicate()`). */
export interface RedisConnection extends RedisCommands {
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: "error", listener: (error: Error) => void): unknown;
}

/** One Lua script: EVALSHA, and EVAL when the server lost its script cache (a restart). */
class Script {
  readonly #source: string;
  #sha: Promise<string> | undefined;

  constructor(source: string) {
    this.#source = source;
  }

  async run(redis: RedisCommands, keys: string[], args: string[]): Promise<unknown> {
    this.#sha ??= sha1(this.#source);
    const rest = [String(keys.length), ...keys, ...args];
    try {
      return await redis.sendCommand(["EVALSHA", await this.#sha, ...rest]);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith("NOSCRIPT")) throw error;
      return await redis.sendCommand(["EVAL", this.#source, ...rest]);
    }
  }
}

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Milliseconds on the server's clock, so that leases do not depend on the workers' clocks. */
const NOW = `local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)`;

/**
 * KEYS: ids, meta. ARGV: prefix, window, then (partition, update id, JSON)
 * per update. Skips ids in the dedupe window; returns how many it stored.
 */
const STORE = new Script(`
local ids, meta, prefix, window = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local n = tonumber(redis.call('HGET', meta, 'n') or '0')
local last = tonumber(redis.call('HGET', meta, 'last') or '-1')
local tops = {}
local stored = 0
for i = 3, #ARGV, 3 do
  local partition, id, data = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  n = n + 1
  if redis.call('ZADD', ids, 'NX', n, id) == 1 then
    local top = tops[partition]
    if top == nil then top = tonumber(redis.call('HGET', meta, 'top:' .. partition) or '0') end
    local ms = math.max(tonumber(id), top)
    redis.call('XADD', prefix .. 'p:' .. partition, string.format('%d-*', ms), 'u', id, 'd', data)
    tops[partition] = ms
    if tonumber(id) > last then last = tonumber(id) end
    stored = stored + 1
  end
end
for partition, top in pairs(tops) do
  redis.call('HSET', meta, 'top:' .. partition, string.format('%d', top))
end
redis.call('HSET', meta, 'n', string.format('%d', n), 'last', string.format('%d', last))
local size = redis.call('ZCARD', ids)
if size > window then redis.call('ZREMRANGEBYRANK', ids, 0, size - window - 1) end
return stored
`);

/**
 * ARGV: prefix, worker, lease ms, partitions, stopping (1/0). Registers the
 * worker, renews its leases, and takes free partitions up to its share
 * (partitions / live workers, rounded up; none while stopping). Returns
 * [held, surplus]: the partitions it holds, and those of them it should
 * hand over (finish what it started, record it, release).
 */
const HEARTBEAT = new Script(`
local prefix, me, lease, total, stopping = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
${NOW}
local workers = prefix .. 'workers'
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now)
if stopping == '1' then redis.call('ZREM', workers, me)
else redis.call('ZADD', workers, now + lease, me) end
local share = 0
if stopping ~= '1' then share = math.ceil(total / math.max(1, redis.call('ZCARD', workers))) end
local held, free = {}, {}
for partition = 0, total - 1 do
  local key = prefix .. 'lease:' .. partition
  local owner = redis.call('GET', key)
  if owner == me then
    redis.call('PEXPIRE', key, lease)
    held[#held + 1] = partition
  elseif not owner then
    free[#free + 1] = partition
  end
end
local surplus = {}
for i = share + 1, #held do surplus[#surplus + 1] = held[i] end
local i = 1
while #held < share and i <= #free do
  redis.call('SET', prefix .. 'lease:' .. free[i], me, 'PX', lease)
  held[#held + 1] = free[i]
  i = i + 1
end
return {held, surplus}
`);

/**
 * ARGV: prefix, worker, release (1/0), then (partition, min id) pairs.
 * Trims each partition the worker still holds below its min id (what
 * finished), and releases it when asked. Returns the partitions it no
 * longer held (their progress was not recorded).
 */
const ADVANCE = new Script(`
local prefix, me, release = ARGV[1], ARGV[2], ARGV[3]
local lost = {}
for i = 4, #ARGV, 2 do
  local partition, minId = ARGV[i], ARGV[i + 1]
  local key = prefix .. 'lease:' .. partition
  if redis.call('GET', key) == me then
    if minId ~= '' then redis.call('XTRIM', prefix .. 'p:' .. partition, 'MINID', minId) end
    if release == '1' then redis.call('DEL', key) end
  else
    lost[#lost + 1] = tonumber(partition)
  end
end
return lost
`);

/** One entry read from a partition's stream. */
export interface StreamEntry {
  /** The stream entry id, `U-k`. */
  id: string;
  /** The update's JSON text. */
  data: string;
}

/** The names of the engine's keys under one prefix. */
export class RedisKeys {
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  partition(index: number): string {
    return `${this.prefix}p:${index}`;
  }

  get ids(): string {
    return `${this.prefix}ids`;
  }

  get meta(): string {
    return `${this.prefix}meta`;
  }
}

/** Stores a batch; `parts` holds (partition, update id, JSON) per update. Resolves with the count stored. */
export async function storeBatch(
  redis: RedisCommands,
  keys: RedisKeys,
  window: number,
  parts: string[],
): Promise<number> {
  const stored = await STORE.run(redis, [keys.ids, keys.meta], [
    keys.prefix,
    String(window),
    ...parts,
  ]);
  return Number(stored);
}

/** The highest update id ever stored, if any. */
export async function lastStored(
  redis: RedisCommands,
  keys: RedisKeys,
): Promise<number | undefined> {
  const last = await redis.sendCommand(["HGET", keys.meta, "last"]);
  const id = Number(last ?? -1);
  return Number.isSafeInteger(id) && id >= 0 ? id : undefined;
}

/** Registers, renews, rebalances; see HEARTBEAT. */
export async function heartbeat(
  redis: RedisCommands,
  keys: RedisKeys,
  worker: string,
  leaseMilliseconds: number,
  partitions: number,
  stopping: boolean,
): Promise<{ held: number[]; surplus: number[] }> {
  const reply = await HEARTBEAT.run(redis, [], [
    keys.prefix,
    worker,
    String(Math.ceil(leaseMilliseconds)),
    String(partitions),
    stopping ? "1" : "0",
  ]) as [unknown[], unknown[]];
  return { held: reply[0].map(Number), surplus: reply[1].map(Number) };
}

/** Trims what finished (and releases, when asked); returns the partitions no longer held. */
export async function advance(
  redis: RedisCommands,
  keys: RedisKeys,
  worker: string,
  progress: Map<number, string>,
  release: boolean,
): Promise<number[]> {
  if (progress.size === 0) return [];
  const args = [keys.prefix, worker, release ? "1" : "0"];
  for (const [partition, minId] of progress) args.push(String(partition), minId);
  const lost = await ADVANCE.run(redis, [], args) as unknown[];
  return lost.map(Number);
}

/**
 * Reads up to `count` entries after `cursor` from each partition, waiting up
 * to `block` ms for the first (0: do not wait). Uses a connection of its own.
 */
export async function readPartitions(
  redis: RedisCommands,
  keys: RedisKeys,
  cursors: Map<number, string>,
  count: number,
  block: number,
): Promise<Map<number, StreamEntry[]>> {
  const read = new Map<number, StreamEntry[]>();
  if (cursors.size === 0) return read;
  const partitions = [...cursors.keys()];
  const args = ["XREAD", "COUNT", String(count)];
  if (block > 0) args.push("BLOCK", String(block));
  args.push("STREAMS", ...partitions.map((p) => keys.partition(p)), ...cursors.values());
  type Entries = [string, string[]][];
  const reply = await redis.sendCommand(args) as
    | [string, Entries][]
    | Record<string, Entries>
    | null;
  if (reply === null) return read;
  const byKey = new Map(partitions.map((p) => [keys.partition(p), p]));
  // RESP2 replies are arrays; RESP3 ones may be a map from stream to entries.
  const streams: [string, Entries][] = Array.isArray(reply) ? reply : Object.entries(reply);
  for (const [key, entries] of streams) {
    const partition = byKey.get(String(key));
    if (partition === undefined) continue;
    read.set(partition, entries.map(([id, fields]) => ({ id, data: fieldOf(fields, "d") })));
  }
  return read;
}

function fieldOf(fields: string[], name: string): string {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]!;
  return "";
}

/** The id right after `id` (`U-k` → `U-(k+1)`): MINID of it trims `id` too. */
export function nextId(id: string): string {
  const [time, sequence] = id.split("-");
  return `${time}-${BigInt(sequence ?? "0") + 1n}`;
}
