// One worker thread of `distribute()` on every runtime: a Web Worker where
// the runtime has them (Deno, Bun), else a `node:worker_threads` Worker
// (Node). The pool sees the same two events on each: a message from the
// worker, and the end of a worker it did not terminate itself (a crash).
//
// The other side of the thread is in worker.ts (`BotWorker`).

import { Worker as ThreadWorker } from "node:worker_threads";

/** A running worker thread, as the pool uses it. */
export interface Thread {
  /** Posts a message to the worker (structured clone). */
  postMessage(message: unknown): void;
  /** Ends the worker; no event is reported after this. */
  terminate(): Promise<void>;
}

/** What a thread reports to its owner. */
export interface ThreadEvents {
  /** The worker posted `data`. */
  message(data: unknown): void;
  /** The worker ended or failed without being terminated; `reason` is one line. */
  crash(reason: string): void;
}

/** Whether this runtime can start worker threads at all. */
export function canStartThreads(): boolean {
  return typeof globalThis.Worker === "function" || typeof ThreadWorker === "function";
}

/**
 * Starts the module at `url` in a new worker thread. The global `Worker` is
 * read at each call (so a test can wrap it).
 */
export function startThread(url: URL, name: string, events: ThreadEvents): Thread {
  return typeof globalThis.Worker === "function"
    ? startWebWorker(url, name, events)
    : startThreadWorker(url, name, events);
}

function startWebWorker(url: URL, name: string, events: ThreadEvents): Thread {
  const worker = new Worker(url, { type: "module", name });
  let ended = false;
  const crash = (reason: string) => {
    if (ended) return;
    ended = true;
    events.crash(reason);
  };
  worker.onmessage = (event: MessageEvent) => {
    if (!ended) events.message(event.data);
  };
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault(); // keeps the main thread alive
    crash(uncaught(String(event.message)));
  };
  worker.onmessageerror = () => crash("A message of the worker could not be read");
  // Bun fires "close" when a worker ends (process.exit() in it, or after an
  // uncaught error); Deno does not, its worker tells us before it ends.
  worker.addEventListener("close", (event) => {
    const code = (event as Event & { code?: unknown }).code;
    crash(`The worker exited with code ${String(code ?? "unknown")}`);
  });
  return {
    postMessage: (message) => worker.postMessage(message),
    terminate: () => {
      ended = true;
      worker.terminate();
      return Promise.resolve();
    },
  };
}

function startThreadWorker(url: URL, name: string, events: ThreadEvents): Thread {
  const worker = new ThreadWorker(url, { name });
  let ended = false;
  const crash = (reason: string) => {
    if (ended) return;
    ended = true;
    events.crash(reason);
  };
  worker.on("message", (data: unknown) => {
    if (!ended) events.message(data);
  });
  worker.on("error", (error: unknown) => {
    crash(
      error instanceof Error ? `Uncaught ${error.name}: ${error.message}` : uncaught(String(error)),
    );
  });
  worker.on("messageerror", () => crash("A message of the worker could not be read"));
  worker.on("exit", (code: number) => crash(`The worker exited with code ${code}`));
  return {
    postMessage: (message) => worker.postMessage(message),
    terminate: async () => {
      ended = true;
      await worker.terminate();
    },
  };
}

/**
 * The text of an uncaught error as one line starting with "Uncaught". Bun's
 * worker error messages quote the source lines before an "error: ..." line;
 * only that line is kept.
 */
function uncaught(message: string): string {
  const bunLine = /^error: (.+)$/m.exec(message)?.[1];
  const text = bunLine === undefined ? message : `Error: ${bunLine}`;
  return text.startsWith("Uncaught") ? text : `Uncaught ${text}`;
}
