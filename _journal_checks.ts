/**
 * Argument checks and the id order shared by the journals.
 *
 * @module
 */

import { show } from "./_validate.ts";

export function checkUpdates(subject: string, updates: unknown): void {
  if (!Array.isArray(updates)) {
    throw new TypeError(
      `${subject} as 'updates' must be an array: current value is ${show(updates)}`,
    );
  }
  updates.forEach((update, index) => {
    const id = (update as { update_id?: unknown } | null | undefined)?.update_id;
    if (!Number.isSafeInteger(id)) {
      throw new TypeError(
        `${subject} as 'updates[${index}].update_id' must be an integer: current value is ${
          show(id)
        }`,
      );
    }
  });
}

export function checkIds(subject: string, ids: unknown): void {
  if (!Array.isArray(ids)) {
    throw new TypeError(
      `${subject} as 'updateIds' must be an array: current value is ${show(ids)}`,
    );
  }
  ids.forEach((id, index) => {
    if (!Number.isSafeInteger(id)) {
      throw new TypeError(
        `${subject} as 'updateIds[${index}]' must be an integer: current value is ${show(id)}`,
      );
    }
  });
}

export function byId(a: { update_id: number }, b: { update_id: number }): number {
  return a.update_id - b.update_id;
}
