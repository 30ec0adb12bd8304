/**
 * Split items into calls that respect a destination's record and byte limits, keeping their
 * order (the sender's cursor relies on it). An item larger than the byte limit on its own still
 * gets a call of its own: the destination refuses it, and the refusal is recorded for that item.
 */
export function splitByLimits<T>(
  items: T[],
  limits: { maxRecords: number; maxBytes?: number },
  sizeOf: (item: T) => number,
): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = limits.maxBytes === undefined ? 0 : sizeOf(item);
    const full =
      current.length >= limits.maxRecords ||
      (limits.maxBytes !== undefined && bytes + size > limits.maxBytes);
    if (full && current.length > 0) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/** Size of a value as the JSON a destination receives, in bytes. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), 'utf8');
}
