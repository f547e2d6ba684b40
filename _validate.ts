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
