// Option checks shared by the modules: reject bad input, never clamp it.

/** Describes a value for an error message (strings quoted, objects not dumped). */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return "a function";
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`;
  if (Array.isArray(value)) return value.length === 0 ? "[]" : "an array";
  if (typeof value === "object" && value !== null) return "an object";
  return String(value);
}

/** Throws a `TypeError` or `RangeError` unless `value` is a positive integer. */
export function positiveInteger(subject: string, name: string, value: unknown): void {
  if (typeof value !== "number") {
    throw new TypeError(
      `${subject} as '${name}' must be a positive integer: current value is ${show(value)}`,
    );
  }
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `${subject} as '${name}' must be a positive integer: current value is ${show(value)}`,
    );
  }
}

/** Throws unless `value` is a finite number within `[min, max]`. */
export function numberInRange(
  subject: string,
  name: string,
  value: unknown,
  min: number,
  max = Infinity,
): void {
  const range = max === Infinity ? `a number of at least ${min}` : `a number from ${min} to ${max}`;
  if (typeof value !== "number") {
    throw new TypeError(
      `${subject} as '${name}' must be ${range}: current value is ${show(value)}`,
    );
  }
  if (Number.isNaN(value) || value < min || value > max) {
    throw new RangeError(
      `${subject} as '${name}' must be ${range}: current value is ${show(value)}`,
    );
  }
}

/** Throws a `TypeError` unless `value` is a function. */
export function isFunction(subject: string, name: string, value: unknown): void {
  if (typeof value !== "function") {
    throw new TypeError(
      `${subject} as '${name}' must be a function: current value is ${show(value)}`,
    );
  }
}

/** Throws a `TypeError` unless `value` is one of `choices`. */
export function oneOf(
  subject: string,
  name: string,
  value: unknown,
  choices: readonly unknown[],
): void {
  if (!choices.includes(value)) {
    const list = choices.map(show).join(", ");
    throw new TypeError(
      `${subject} as '${name}' must be one of ${list}: current value is ${show(value)}`,
    );
  }
}

/** Throws a `TypeError` unless `value` is a plain object (or undefined). */
export function optionalObject(subject: string, name: string, value: unknown): void {
  if (
    value !== undefined && (typeof value !== "object" || value === null || Array.isArray(value))
  ) {
    throw new TypeError(
      `${subject} as '${name}' must be an object: current value is ${show(value)}`,
    );
  }
}

/**
 * Throws a `TypeError` if `options` has a property not named in `known`,
 * suggesting the known name nearest to it (by edit distance, ignoring case)
 * when one is close: `Cannot create sink as 'concurency' is not an option:
 * did you mean 'concurrency'?`. Call it after checking that `options` is an
 * object; `undefined` passes. Keep `known` complete: a name missing from it
 * rejects a valid option.
 *
 * @param subject The start of the message, e.g. `"Cannot create sink"`
 * @param options The options object the caller passed
 * @param known Every option name `options` may have
 * @param parent The option holding `options`, if nested (e.g. `"timeout"`): names are shown as `timeout.name`
 * @throws {TypeError} naming the first unknown option
 */
export function knownOptions<T extends object>(
  subject: string,
  options: T | undefined,
  known: readonly (keyof T & string)[],
  parent?: string,
): void {
  if (options === undefined) return;
  const path = (name: string) => parent === undefined ? name : `${parent}.${name}`;
  for (const name of Object.keys(options)) {
    if ((known as readonly string[]).includes(name)) continue;
    const nearest = nearestName(name, known);
    const hint = nearest === undefined ? "" : `: did you mean '${path(nearest)}'?`;
    throw new TypeError(`${subject} as '${path(name)}' is not an option${hint}`);
  }
}

/** The name of `names` nearest to `name`, if it is close enough to be a likely typo. */
function nearestName(name: string, names: readonly string[]): string | undefined {
  // Up to one edit per three characters: 'concurency' finds 'concurrency', 'foo' finds nothing.
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const candidate of names) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * How many insertions, deletions, substitutions and swaps of two neighbours
 * turn `a` into `b` (optimal string alignment distance).
 */
function editDistance(a: string, b: string): number {
  // Three rows of the table: the one before the previous, the previous, the current.
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        distance = Math.min(distance, before[j - 2]! + 1);
      }
      current.push(distance);
    }
    before = previous;
    previous = current;
  }
  return previous[b.length]!;
}
