/**
 * What a subject process records while its bot runs: per update, how often
 * and when its handler ended; per chat, whether updates started in order and
 * never overlapped; and the process's memory. All storage is allocated up
 * front, before the first heap measurement, so it does not count as retained.
 *
 * ```ts
 * import { Recorder } from "./_recorder.ts";
 *
 * const recorder = new Recorder({ expected: 2, firstId: 1, chats: 1 });
 * recorder.start(1, 1);
 * recorder.end(1, 1);
 * recorder.unique; // 1
 * ```
 *
 * @module
 */

/** Sizes the recorder needs to allocate everything up front. */
export interface RecorderSize {
  expected: number;
  firstId: number;
  chats: number;
}

/** Counts handler starts and ends per update and per chat. */
export class Recorder {
  readonly #firstId: number;
  readonly #timesStarted: Uint8Array;
  readonly #timesEnded: Uint8Array;
  readonly #firstEnd: Float64Array;
  readonly #greatestStarted: Float64Array;
  readonly #runningInChat: Uint32Array;
  #waiters: Array<{ count: number; resolve: () => void }> = [];
  started = 0;
  ended = 0;
  unique = 0;
  duplicates = 0;
  orderViolations = 0;
  overlaps = 0;
  firstStartAt = 0;
  lastEndAt = 0;
  lastProgressAt = Date.now();

  constructor({ expected, firstId, chats }: RecorderSize) {
    this.#firstId = firstId;
    this.#timesStarted = new Uint8Array(expected);
    this.#timesEnded = new Uint8Array(expected);
    this.#firstEnd = new Float64Array(expected);
    this.#greatestStarted = new Float64Array(chats + 1);
    this.#runningInChat = new Uint32Array(chats + 1);
  }

  /** Records that the handler of update `id` in chat `chat` started. */
  start(id: number, chat: number): void {
    this.started++;
    if (this.firstStartAt === 0) this.firstStartAt = Date.now();
    const index = id - this.#firstId;
    const known = chat > 0 && chat < this.#runningInChat.length;
    if (known && this.#runningInChat[chat]! > 0) this.overlaps++;
    if (known) this.#runningInChat[chat]!++;
    const firstRun = this.#timesStarted[index] === 0;
    if (index >= 0 && index < this.#timesStarted.length && firstRun) {
      this.#timesStarted[index] = 1;
      if (known && id < this.#greatestStarted[chat]!) this.orderViolations++;
      if (known) this.#greatestStarted[chat] = Math.max(this.#greatestStarted[chat]!, id);
    }
  }

  /** Records that the handler of update `id` in chat `chat` ended. */
  end(id: number, chat: number): void {
    const now = Date.now();
    this.ended++;
    this.lastEndAt = this.lastProgressAt = now;
    if (chat > 0 && chat < this.#runningInChat.length) this.#runningInChat[chat]!--;
    const index = id - this.#firstId;
    if (index < 0 || index >= this.#timesEnded.length) return;
    if (this.#timesEnded[index]! > 0) {
      this.duplicates++;
      this.#timesEnded[index] = Math.min(255, this.#timesEnded[index]! + 1);
      return;
    }
    this.#timesEnded[index] = 1;
    this.#firstEnd[index] = now;
    this.unique++;
    while (this.#waiters.length > 0 && this.#waiters[0]!.count <= this.unique) {
      this.#waiters.shift()!.resolve();
    }
  }

  /** Resolves once `count` distinct updates were handled. */
  whenHandled(count: number): Promise<void> {
    if (this.unique >= count) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiters.push({ count, resolve });
    this.#waiters.sort((a, b) => a.count - b.count);
    return promise;
  }

  /** First handler end of each update minus `base`, -1 for updates never handled. */
  endsSince(base: number): number[] {
    return Array.from(
      this.#firstEnd,
      (end, index) => this.#timesEnded[index] === 0 ? -1 : end - base,
    );
  }
}

/** Samples the resident set size every `intervalMs` and keeps the peak. */
export class RssSampler {
  #peak = Deno.memoryUsage().rss;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(intervalMs = 50) {
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Takes one sample now. */
  sample(): void {
    this.#peak = Math.max(this.#peak, Deno.memoryUsage().rss);
  }

  /** Takes a last sample and stops. @returns The peak RSS in bytes. */
  stop(): number {
    this.sample();
    clearInterval(this.#timer);
    return this.#peak;
  }
}

/** The `gc` function V8 exposes with `--expose-gc`, if it does. */
export const gc = (globalThis as { gc?: () => void }).gc;

/**
 * Lets pending callbacks run, forces full garbage collections, and measures
 * the heap.
 *
 * @returns `heapUsed` in bytes
 */
export async function heapAfterGc(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc?.();
  gc?.();
  return Deno.memoryUsage().heapUsed;
}
