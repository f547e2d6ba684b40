/**
 * What the bench (the parent process, which runs the fake Bot API) and a
 * subject process (the child, which runs one bot) tell each other. The parent
 * passes a `ChildSpec` as the child's only argument; the child answers with
 * tagged lines on stdout (`@ready`, `@stopped {...}`, `@report {...}`) and
 * waits for `go` and `continue` on stdin. A crash-scenario bot gets a
 * `CrashSpec` and says nothing: the bench reads what it sent to the fake
 * server, and kills it.
 *
 * ```ts
 * import { delayFor } from "./_protocol.ts";
 *
 * const delay = delayFor({ kind: "hotCold", hotChat: 1, hotMilliseconds: 20, coldMilliseconds: 5 });
 * delay(7, 1); // 20
 * ```
 *
 * @module
 */

/** How long the handler of the update `id` in chat `chat` takes. */
export type HandlerSpec =
  /** Returns at once, without a promise. */
  | { kind: "none" }
  /** Awaits a timer of a fixed length. */
  | { kind: "sleep"; milliseconds: number }
  /** Awaits a timer whose length depends on whether the chat is the hot one. */
  | { kind: "hotCold"; hotChat: number; hotMilliseconds: number; coldMilliseconds: number }
  /** Awaits a timer of `min`..`max` ms, drawn from the update id and the seed. */
  | { kind: "seeded"; min: number; max: number; seed: number }
  /** Keeps the thread busy for a fixed time. */
  | { kind: "spin"; milliseconds: number };

/** Everything a child needs to run one subject in one scenario. */
export interface ChildSpec {
  scenario: string;
  subject: string;
  apiRoot: string;
  token: string;
  /** How many updates the parent pushes; their ids are `firstId` onwards. */
  expected: number;
  firstId: number;
  /** Chat ids run from 1 to `chats`. */
  chats: number;
  concurrency: number;
  /** Whether to install the subject's `sequentialize(chat id)` first. */
  sequentialize: boolean;
  handler: HandlerSpec;
  /** Stop after this many updates were handled, then run a fresh bot to the end. */
  stopAfter?: number;
  /** Soft time limit from `go`: the child stops and reports what it did. */
  budgetMs: number;
  /** Gives up when no handler ended for this long. */
  stallMs: number;
}

/** Everything a bot of the kill loop (`crash_subject.ts`) needs; it runs until killed. */
export interface CrashSpec {
  subject: string;
  apiRoot: string;
  token: string;
  concurrency: number;
  /** The sink's `maxPending` (grammyx subjects only); the runner's default without it. */
  maxPending?: number;
  /** Whether to install the subject's `sequentialize(chat id)` first. */
  sequentialize: boolean;
  /** The work before the handler sends the update id back. */
  handler: HandlerSpec;
  /** The KV file of `grammyx-journal`: it outlives the kills; the harness removes it. */
  journalPath?: string;
}

/** How a child's run ended. */
export type ChildStatus = "done" | "budget" | "stalled" | "crashed" | "failed";

/** What the child measured around its mid-run `stop()`. */
export interface StopReport {
  /** Distinct updates handled when `stop()` was called. */
  handledBefore: number;
  /** Handlers started and not ended when `stop()` was called. */
  inFlight: number;
  /** Updates the runner had taken and not finished (`handle.size()`), if it tells. */
  taken: number | undefined;
  /** How long `stop()` took to resolve. */
  stopMs: number;
  /** `Date.now()` when `stop()` resolved. */
  resolvedAt: number;
}

/** The one result line of a child. */
export interface ChildReport {
  status: ChildStatus;
  error: string | undefined;
  /** Distinct updates handled. */
  unique: number;
  /** Handler runs beyond the first per update. */
  duplicates: number;
  /** First runs of an update that started after a later update of its chat. */
  orderViolations: number;
  /** Handler starts while another handler of the same chat was running. */
  overlaps: number;
  firstStartAt: number;
  lastEndAt: number;
  /** Per update (index = id − firstId): first handler end − `base` in ms, or -1. */
  base: number;
  ends: number[];
  peakRss: number;
  /** `heapUsed` after a forced GC before the first update, and after the end. */
  heapStart: number;
  heapEnd: number;
  /** Whether `globalThis.gc` was there (needs `--v8-flags=--expose-gc`). */
  gcExposed: boolean;
  stop: StopReport | undefined;
  /** How long the final stop took (the run is over by then). */
  finalStopMs: number;
  /** CPU time (user + system, all threads) of the child from `go` to the end of the run. */
  cpuMs: number;
}

/** Line tags. */
export const TAG = { ready: "@ready", stopped: "@stopped ", report: "@report " } as const;

/**
 * Returns the handler time of an update, in ms, for a handler spec.
 *
 * @param spec The scenario's handler
 * @returns A function of the update id and chat id
 */
export function delayFor(spec: HandlerSpec): (id: number, chat: number) => number {
  switch (spec.kind) {
    case "none":
      return () => 0;
    case "sleep":
    case "spin":
      return () => spec.milliseconds;
    case "hotCold":
      return (_, chat) => chat === spec.hotChat ? spec.hotMilliseconds : spec.coldMilliseconds;
    case "seeded":
      return (id) => seededInteger(id, spec.min, spec.max, spec.seed);
  }
}

/**
 * Draws a whole number from `min` to `max` for `key`: the same for the same
 * key and seed, with no generator state to share between processes.
 *
 * @param key What the number is for (an update id, a run's index)
 * @param min The least number
 * @param max The greatest number
 * @param seed The scenario's seed
 * @returns The number
 */
export function seededInteger(key: number, min: number, max: number, seed: number): number {
  return min + (hash(key ^ seed) % (max - min + 1));
}

/** A 32-bit integer hash (lowbias32), so seeded delays need no shared state. */
function hash(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Reads text lines from a byte stream, one `next()` at a time. */
export class LineReader {
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #ended = false;
  /** Lines that carried no tag (stray output of a library), kept for diagnosis. */
  readonly untagged: string[] = [];

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Resolves with the next line, or `undefined` at the end of the stream. */
  async next(): Promise<string | undefined> {
    while (true) {
      const newline = this.#buffer.indexOf("\n");
      if (newline >= 0) {
        const line = this.#buffer.slice(0, newline);
        this.#buffer = this.#buffer.slice(newline + 1);
        return line;
      }
      if (this.#ended) return undefined;
      const { value, done } = await this.#reader.read();
      if (done) this.#ended = true;
      else this.#buffer += value;
    }
  }

  /** Skips lines up to the first that starts with `tag`; resolves with its rest. */
  async expect(tag: string): Promise<string | undefined> {
    for (let line = await this.next(); line !== undefined; line = await this.next()) {
      if (line.startsWith(tag)) return line.slice(tag.length);
      if (this.untagged.length < 20) this.untagged.push(line.slice(0, 300));
    }
    return undefined;
  }
}
