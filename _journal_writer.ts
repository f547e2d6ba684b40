// Writes the fetcher's side of a journal: what the previous run left, and
// which updates finished, batched on a timer so that a busy bot makes few
// writes. A failed write keeps its ids and writes them again; `drain()` at
// stop() writes what is left within the stop's deadline.

import { settlesBefore } from "./_async.ts";
import { startTimer, stopTimer, type TimerId } from "./_clock.ts";
import type { UpdateJournal } from "./_journal_contract.ts";

/** How the writer reports failures (already redacted by the caller). */
export type JournalReport = (message: string, error: unknown) => void;

/** Finished ids are written at the latest this long after the first of a batch. */
const FLUSH_DELAY = 10;
/** ... or as soon as this many are waiting. */
const FLUSH_SIZE = 100;
/** After a failed write, the next try waits this long (unless stop() drains first). */
const RETRY_DELAY = 1_000;

/** Collects finished update ids and records them in the journal. */
export class JournalWriter<Y> {
  readonly #journal: UpdateJournal<Y>;
  readonly #report: JournalReport;
  /** Ids finished and not yet recorded (failed writes put theirs back). */
  #waiting: number[] = [];
  #timer: TimerId | undefined;
  /** The write in flight, if any, and the ids it writes. */
  #writing: Promise<void> | undefined;
  #writingIds: number[] = [];
  /** Whether the last write failed: the next waits `RETRY_DELAY`. */
  #failing = false;
  /** Set by `drain()` until the next `finished()`: no timer may outlive a stop. */
  #stopped = false;

  constructor(journal: UpdateJournal<Y>, report: JournalReport) {
    this.#journal = journal;
    this.#report = report;
  }

  /** How many finished ids are not recorded yet. */
  get unrecorded(): number {
    return this.#waiting.length + this.#writingIds.length;
  }

  /** Records, soon, that `updateId` finished. */
  finished(updateId: number): void {
    this.#stopped = false;
    this.#waiting.push(updateId);
    if (this.#writing !== undefined || this.#failing) {
      this.#schedule(); // the write in flight (or the retry) takes these along
    } else if (this.#waiting.length >= FLUSH_SIZE) {
      void this.#flush();
    } else {
      this.#schedule();
    }
  }

  /**
   * Writes every waiting id, retrying failed writes at once, until nothing
   * waits or `signal` aborts. Reports what could not be written.
   */
  async drain(signal?: AbortSignal): Promise<void> {
    this.#stopped = true;
    stopTimer(this.#timer);
    this.#timer = undefined;
    this.#failing = false;
    let failures = 0;
    while (this.#writing !== undefined || this.#waiting.length > 0) {
      if (!await settlesBefore(this.#writing ?? this.#flush(), signal)) break;
      if (this.#failing) {
        this.#failing = false;
        if (++failures === 3) break;
      }
    }
    stopTimer(this.#timer);
    this.#timer = undefined;
    const left = this.unrecorded;
    if (left > 0) {
      this.#report(
        `Could not record ${left} finished updates in the journal before the stop ended: they run again after a restart`,
        undefined,
      );
    }
  }

  /** Calls the journal's `compact()`, giving up waiting when `signal` aborts. */
  async compact(signal?: AbortSignal): Promise<void> {
    const compacting = call(() => this.#journal.compact()).catch((error) =>
      this.#report("Could not compact the journal", error)
    );
    if (!await settlesBefore(compacting, signal)) {
      this.#report("Could not compact the journal before the stop ended", undefined);
    }
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = startTimer(() => {
      this.#timer = undefined;
      if (this.#writing === undefined) void this.#flush();
      else this.#schedule();
    }, this.#failing ? RETRY_DELAY : FLUSH_DELAY);
  }

  /** Writes the waiting ids with one `finish` call; on failure they wait again. */
  #flush(): Promise<void> {
    stopTimer(this.#timer);
    this.#timer = undefined;
    if (this.#writing !== undefined) return this.#writing;
    if (this.#waiting.length === 0) return Promise.resolve();
    const ids = this.#writingIds = this.#waiting;
    this.#waiting = [];
    this.#writing = call(() => this.#journal.finish(ids)).then(
      () => {
        this.#failing = false;
      },
      (error) => {
        this.#failing = true;
        this.#waiting = ids.concat(this.#waiting);
        this.#report(
          `Could not record ${ids.length} finished updates in the journal, trying again: ${
            ids.length === 1 ? "it" : "they"
          } may run again after a crash`,
          error,
        );
      },
    ).finally(() => {
      this.#writing = undefined;
      this.#writingIds = [];
      if (this.#waiting.length > 0) this.#schedule();
    });
    return this.#writing;
  }
}

/** Calls `write`, turning a synchronous throw into a rejection. */
function call(write: () => Promise<void>): Promise<void> {
  try {
    return Promise.resolve(write());
  } catch (error) {
    return Promise.reject(error);
  }
}
