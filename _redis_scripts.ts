// The Redis side of the Redis Streams queue engine: its keys and its Lua
// scripts. Each script runs atomically on the server, so storing a batch,
// taking a lease, reading, and recording outcomes with the renewal of the
// leases are each one round trip, and every write made under a lease checks
// that lease in the same step. Time is the server's (TIME), so leases do not
// depend on the workers' clocks. Not exported by mod.ts.
//
// Keys, under `prefix` (e.g. "grammyx:"):
//   {prefix}p:{n}         stream of partition n: fields u (update id), k (its
//                         ordering key), d (its JSON); entry id `U-0` for
//                         update U (`T-k` after the top T when U arrives late:
//                         a webhook delivery that overtook an older one)
//   {prefix}ids           sorted set: the last `window` update ids stored (the
//                         dedupe), scored by store order
//   {prefix}meta          hash: n (store counter), last (highest id stored),
//                         top:{n} (time part of partition n's last entry id)
//   {prefix}lease:{n}     hash: owner, expires (server ms), cursor (last entry
//                         read under the lease)
//   {prefix}attempts:{n}  hash: entry id → holders that died while running it
//   {prefix}owners        sorted set: active workers, scored by when they
//                         stop counting (their last write plus the lease time)
//   {prefix}held:{owner}  set: the partitions whose lease names that owner
//   {prefix}dead          stream of dead letters
//   channel {prefix}wake  a partition number, published when it may hold work
//
// An update leaves its partition (XDEL) only in the script that records its
// outcome, so what is left is exactly what has no known outcome.

/** What the engine needs of a node-redis client (v5, from `createClient()`). */
export interface RedisCommands {
  /** Sends one command as its words; resolves with the reply. */
  sendCommand(args: string[]): Promise<unknown>;
}

/** A node-redis client: commands, plus a second connection for wake-ups. */
export interface RedisClient extends RedisCommands {
  /** A new, unconnected client with the same options (node-redis `duplicate()`). */
  duplicate(): RedisSubscriber;
}

/** The connection the engine opens for wake-ups (from `duplicate()`), and closes. */
export interface RedisSubscriber {
  /** Opens the connection. */
  connect(): Promise<unknown>;
  /** Calls `listener` with each message published on `channel`. */
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  /** Closes the connection at once. */
  destroy(): void;
  /** Connection failures (reported by the engine; without a listener they would end the process). */
  on(event: "error", listener: (error: Error) => void): unknown;
}

/** One Lua script: EVALSHA, and EVAL when the server lost its script cache (a restart). */
class Script {
  readonly #source: string;
  #sha: Promise<string> | undefined;

  constructor(source: string) {
    this.#source = source;
  }

  async run(redis: RedisCommands, args: string[]): Promise<unknown> {
    this.#sha ??= sha1(this.#source);
    try {
      return await redis.sendCommand(["EVALSHA", await this.#sha, "0", ...args]);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith("NOSCRIPT")) throw error;
      return await redis.sendCommand(["EVAL", this.#source, "0", ...args]);
    }
  }
}

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Shared by the lease scripts: the server's time, the active workers
 * (registering `me` until `now + ms`), how many partitions `me` holds, and
 * its share: the partitions over the active workers, rounded up.
 */
const PRELUDE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function activate(prefix, me, ms)
  local owners = prefix .. 'owners'
  redis.call('ZREMRANGEBYSCORE', owners, '-inf', now)
  redis.call('ZADD', owners, now + ms, me)
end
local function held(prefix, me)
  return redis.call('SCARD', prefix .. 'held:' .. me)
end
local function share(prefix, total)
  return math.ceil(total / math.max(1, redis.call('ZCARD', prefix .. 'owners')))
end
`;

/**
 * ARGV: prefix, window, then (partition, update id, key, JSON) per update.
 * Skips ids in the dedupe window, publishes a wake-up per partition that
 * got an update; returns how many it stored.
 */
const STORE = new Script(`
local prefix, window = ARGV[1], tonumber(ARGV[2])
local ids, meta = prefix .. 'ids', prefix .. 'meta'
local n = tonumber(redis.call('HGET', meta, 'n') or '0')
local last = tonumber(redis.call('HGET', meta, 'last') or '-1')
local tops = {}
local stored = 0
for i = 3, #ARGV, 4 do
  local partition, id, key, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  n = n + 1
  if redis.call('ZADD', ids, 'NX', n, id) == 1 then
    local top = tops[partition]
    if top == nil then top = tonumber(redis.call('HGET', meta, 'top:' .. partition) or '0') end
    local ms = math.max(tonumber(id), top)
    redis.call('XADD', prefix .. 'p:' .. partition, string.format('%d-*', ms), 'u', id, 'k', key, 'd', data)
    tops[partition] = ms
    if tonumber(id) > last then last = tonumber(id) end
    stored = stored + 1
  end
end
for partition, top in pairs(tops) do
  redis.call('HSET', meta, 'top:' .. partition, string.format('%d', top))
  redis.call('PUBLISH', prefix .. 'wake', partition)
end
redis.call('HSET', meta, 'n', string.format('%d', n), 'last', string.format('%d', last))
local size = redis.call('ZCARD', ids)
if size > window then redis.call('ZREMRANGEBYRANK', ids, 0, size - window - 1) end
return stored
`);

/** ARGV: prefix, partitions, limit. The partitions that hold entries. */
const LANES = new Script(`
local prefix, total, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lanes = {}
for n = 0, total - 1 do
  if #lanes >= limit then break end
  if redis.call('XLEN', prefix .. 'p:' .. n) > 0 then lanes[#lanes + 1] = n end
end
return lanes
`);

/**
 * ARGV: prefix, partition, owner, ms, partitions. Takes the lease if it is
 * free or expired and the owner holds fewer than its share; taking over from
 * another holder counts an attempt for the first entry of each key that
 * holder had read (what it was running).
 * Returns 1 if taken (or renewed), 0 if not.
 */
const LEASE = new Script(`${PRELUDE}
local prefix, partition, me, ms, total = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
activate(prefix, me, ms)
local key = prefix .. 'lease:' .. partition
local lease = redis.call('HMGET', key, 'owner', 'expires', 'cursor')
local live = lease[1] and tonumber(lease[2]) > now
if live and lease[1] == me then
  redis.call('HSET', key, 'expires', now + ms)
  return 1
end
if live or held(prefix, me) >= share(prefix, total) then return 0 end
if lease[1] and lease[1] ~= me and lease[3] and lease[3] ~= '' then
  -- The dead holder ran at most the first unrecorded entry of each key.
  local read = redis.call('XRANGE', prefix .. 'p:' .. partition, '-', lease[3])
  local seen = {}
  for _, entry in ipairs(read) do
    local key = ''
    for j = 1, #entry[2], 2 do if entry[2][j] == 'k' then key = entry[2][j + 1] end end
    if not seen[key] then
      seen[key] = true
      redis.call('HINCRBY', prefix .. 'attempts:' .. partition, entry[1], 1)
    end
  end
end
if lease[1] then redis.call('SREM', prefix .. 'held:' .. lease[1], partition) end
redis.call('DEL', key)
redis.call('HSET', key, 'owner', me, 'expires', now + ms, 'cursor', '')
redis.call('SADD', prefix .. 'held:' .. me, partition)
return 1
`);

/**
 * ARGV: prefix, partition, owner, limit, partitions, start (`-` for the
 * oldest entries, `(` and an entry id for those after it). Returns {'lost'}
 * if the lease is not the owner's, {'surplus'} if the owner holds more than
 * its share (it should release this one), else {'ok', entries, attempts}.
 * The lease's cursor becomes the last entry read.
 */
const READ = new Script(`${PRELUDE}
local prefix, partition, me, limit, total, start = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local key = prefix .. 'lease:' .. partition
if redis.call('HGET', key, 'owner') ~= me then return {'lost'} end
redis.call('ZREMRANGEBYSCORE', prefix .. 'owners', '-inf', now)
if held(prefix, me) > share(prefix, total) then return {'surplus'} end
local entries = redis.call('XRANGE', prefix .. 'p:' .. partition, start, '+', 'COUNT', limit)
local attempts = {}
if #entries > 0 then
  redis.call('HSET', key, 'cursor', entries[#entries][1])
  local ids = {}
  for i, entry in ipairs(entries) do ids[i] = entry[1] end
  attempts = redis.call('HMGET', prefix .. 'attempts:' .. partition, unpack(ids))
  for i = 1, #attempts do attempts[i] = attempts[i] or '0' end
end
return {'ok', entries, attempts}
`);

/**
 * ARGV: prefix, owner, ms, then per partition: partition, count, and count
 * (entry id, dead-letter 1/0) pairs. Removes the recorded entries (copying
 * dead letters to the dead stream) and renews the lease, for each partition
 * still the owner's. Returns the partitions that were not.
 */
const RECORD = new Script(`${PRELUDE}
local prefix, me, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
activate(prefix, me, ms)
local lost = {}
local i = 4
while i <= #ARGV do
  local partition, count = ARGV[i], tonumber(ARGV[i + 1])
  local key = prefix .. 'lease:' .. partition
  local stream = prefix .. 'p:' .. partition
  local mine = redis.call('HGET', key, 'owner') == me
  if mine then redis.call('HSET', key, 'expires', now + ms) else lost[#lost + 1] = partition end
  for j = 1, count do
    local id, dead = ARGV[i + 2 * j], ARGV[i + 2 * j + 1]
    if mine then
      if dead == '1' then
        local entry = redis.call('XRANGE', stream, id, id)[1]
        if entry then redis.call('XADD', prefix .. 'dead', '*', 'p', partition, 'id', id, unpack(entry[2])) end
      end
      redis.call('XDEL', stream, id)
      redis.call('HDEL', prefix .. 'attempts:' .. partition, id)
    end
  end
  i = i + 2 + 2 * count
end
return lost
`);

/**
 * ARGV: prefix, partition, owner, ms, partitions, hand back (1/0). Releases
 * the lease when the partition is empty, when the owner holds more than its
 * share, or when it hands back (stop); a partition left with entries is
 * published for another worker. Returns 'released', 'waiting' (the lease is
 * kept and renewed) or 'lost'.
 */
const RELEASE = new Script(`${PRELUDE}
local prefix, partition, me, ms, total, back = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local key = prefix .. 'lease:' .. partition
if redis.call('HGET', key, 'owner') ~= me then return 'lost' end
local waiting = redis.call('XLEN', prefix .. 'p:' .. partition) > 0
redis.call('ZREMRANGEBYSCORE', prefix .. 'owners', '-inf', now)
if back ~= '1' and waiting and held(prefix, me) <= share(prefix, total) then
  activate(prefix, me, ms)
  redis.call('HSET', key, 'expires', now + ms)
  return 'waiting'
end
redis.call('DEL', key)
redis.call('SREM', prefix .. 'held:' .. me, partition)
if back == '1' and held(prefix, me) == 0 then redis.call('ZREM', prefix .. 'owners', me) end
if waiting then redis.call('PUBLISH', prefix .. 'wake', partition) end
return 'released'
`);

/** One entry read from a partition. */
export interface StreamEntry {
  /** The stream entry id, `U-k`. */
  id: string;
  /** The ordering key stored with it. */
  key: string;
  /** The update's JSON text. */
  data: string;
  /** Holders of the partition that died while running it. */
  attempts: number;
}

/** The engine's scripts under one key prefix, for one number of partitions. */
export class RedisScripts {
  readonly #redis: RedisCommands;
  readonly #prefix: string;
  readonly #partitions: string;

  constructor(redis: RedisCommands, prefix: string, partitions: number) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#partitions = String(partitions);
  }

  /** The channel that wake-ups are published on. */
  get channel(): string {
    return `${this.#prefix}wake`;
  }

  /** Stores a batch; `parts` holds (partition, update id, key, JSON) per update. Resolves with the count stored. */
  async store(window: number, parts: string[]): Promise<number> {
    return Number(await STORE.run(this.#redis, [this.#prefix, String(window), ...parts]));
  }

  /** The highest update id ever stored, if any. */
  async last(): Promise<number | undefined> {
    const last = await this.#redis.sendCommand(["HGET", `${this.#prefix}meta`, "last"]);
    const id = Number(last ?? -1);
    return Number.isSafeInteger(id) && id >= 0 ? id : undefined;
  }

  /** The partitions that hold entries, at most `limit`. */
  async lanes(limit: number): Promise<number[]> {
    const reply = await LANES.run(this.#redis, [this.#prefix, this.#partitions, String(limit)]);
    return (reply as unknown[]).map(Number);
  }

  /** Takes (or renews) the lease of `partition` for `owner`; whether it did. */
  async lease(partition: number, owner: string, milliseconds: number): Promise<boolean> {
    const reply = await LEASE.run(this.#redis, [
      this.#prefix,
      String(partition),
      owner,
      String(Math.ceil(milliseconds)),
      this.#partitions,
    ]);
    return Number(reply) === 1;
  }

  /**
   * The oldest `limit` entries of a held partition, or the `limit` after the
   * entry id `after`; "lost" or "surplus" instead when it should not be read.
   */
  async read(
    partition: number,
    owner: string,
    limit: number,
    after?: string,
  ): Promise<StreamEntry[] | "lost" | "surplus"> {
    const reply = await READ.run(this.#redis, [
      this.#prefix,
      String(partition),
      owner,
      String(limit),
      this.#partitions,
      after === undefined ? "-" : `(${after}`,
    ]) as [string, [string, string[]][]?, string[]?];
    if (reply[0] === "lost" || reply[0] === "surplus") return reply[0];
    const entries = reply[1] ?? [];
    const attempts = reply[2] ?? [];
    return entries.map(([id, fields], index) => ({
      id,
      key: fieldOf(fields, "k"),
      data: fieldOf(fields, "d"),
      attempts: Number(attempts[index] ?? 0),
    }));
  }

  /**
   * Removes recorded entries (dead letters copied aside) and renews leases,
   * per partition still `owner`'s; resolves with the partitions that were not.
   */
  async record(
    owner: string,
    milliseconds: number,
    byPartition: Map<number, { id: string; dead: boolean }[]>,
  ): Promise<number[]> {
    const args = [this.#prefix, owner, String(Math.ceil(milliseconds))];
    for (const [partition, entries] of byPartition) {
      args.push(String(partition), String(entries.length));
      for (const { id, dead } of entries) args.push(id, dead ? "1" : "0");
    }
    return (await RECORD.run(this.#redis, args) as unknown[]).map(Number);
  }

  /** Releases (or, with entries waiting and no reason to let go, keeps) a lease; see RELEASE. */
  async release(
    partition: number,
    owner: string,
    milliseconds: number,
    handBack: boolean,
  ): Promise<"released" | "waiting" | "lost"> {
    return await RELEASE.run(this.#redis, [
      this.#prefix,
      String(partition),
      owner,
      String(Math.ceil(milliseconds)),
      this.#partitions,
      handBack ? "1" : "0",
    ]) as "released" | "waiting" | "lost";
  }
}

function fieldOf(fields: string[], name: string): string {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]!;
  return "";
}
