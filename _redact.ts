// Keeps bot tokens out of everything the module prints or throws.

const TOKEN_IN_URL = /bot\d+:[\w-]+/g;
const BARE_TOKEN = /\b\d{5,}:[\w-]{30,}\b/g;

/** Replaces every bot token in `text` (in URLs or bare) with a placeholder. */
export function redact(text: string, token?: string): string {
  let clean = text;
  if (token) clean = clean.split(token).join("<token>");
  return clean.replace(TOKEN_IN_URL, "bot<token>").replace(BARE_TOKEN, "<token>");
}

/** A one-line description of any thrown value, with tokens removed. */
export function describe(error: unknown, token?: string): string {
  if (error instanceof Error) {
    let text = `${error.name}: ${error.message}`;
    const cause = (error as { cause?: unknown }).cause;
    if (cause !== undefined && cause !== error) {
      const inner = cause instanceof Error ? cause.message : String(cause);
      if (!text.includes(inner)) text += ` (${inner})`;
    }
    return redact(text, token);
  }
  return redact(String(error), token);
}

/**
 * Copies an error without tokens in its message, stack or causes, keeping
 * its name and the Bot API fields callers branch on.
 */
export function redactError(error: unknown, token?: string): Error {
  if (!(error instanceof Error)) return new Error(redact(String(error), token));
  // grammY's HttpError keeps the failed fetch (with the URL) in `.error`.
  const cause = (error as { cause?: unknown }).cause ?? (error as { error?: unknown }).error;
  const copy = new Error(
    redact(error.message, token),
    cause === undefined ? undefined : { cause: redactError(cause, token) },
  );
  copy.name = error.name;
  if (error.stack !== undefined) copy.stack = redact(error.stack, token);
  for (const field of ["error_code", "description", "parameters", "method"]) {
    if (field in error) {
      const value = (error as unknown as Record<string, unknown>)[field];
      Object.defineProperty(copy, field, {
        value: typeof value === "string" ? redact(value, token) : value,
        enumerable: true,
      });
    }
  }
  return copy;
}

const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:@/\s]*):[^@/\s]*@/gi;

/**
 * Replaces the password of every URL in `text` (`redis://user:secret@host`
 * becomes `redis://user:<password>@host`) and each of `secrets` with
 * `<password>`.
 */
export function redactSecrets(text: string, ...secrets: (string | undefined)[]): string {
  let clean = text;
  for (const secret of secrets) if (secret) clean = clean.split(secret).join("<password>");
  return clean.replace(URL_PASSWORD, "$1:<password>@");
}
