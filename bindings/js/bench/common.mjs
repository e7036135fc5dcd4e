// @ts-check
/** What the benchmark's client, servers and runner share. */

/**
 * Raised limits of both ends for bulk uploads: the message limit and the
 * connection credit (which must hold a whole message until it is
 * delivered) from 1 MiB and 4 MiB to 16 MiB, for the upload as a single
 * message; and the stream credit from 1 MiB to 4 MiB, for the upload as a
 * stream of 1 MiB messages with fewer credit round trips.
 */
export const BULK_LIMITS = { maxMessage: 16 << 20, connectionCredit: 16 << 20, initialStreamCredit: 4 << 20 };

/** Size of the pieces of a streamed upload: the default message limit (1 MiB). */
export const CHUNK = 1 << 20;

/**
 * @param {number} n
 * @returns {Uint8Array} `n` as 4 bytes, little-endian
 */
export function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

/**
 * @param {Uint8Array} b
 * @returns {number} the little-endian u32 at the start of `b`
 */
export function readU32(b) {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
}

/**
 * @param {ArrayLike<number>} sorted ascending
 * @param {number} q in [0, 1]
 * @returns {number} the nearest-rank quantile
 */
export function quantile(sorted, q) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return /** @type {number} */ (sorted[i]);
}

/**
 * @param {readonly number[]} xs
 * @returns {number} the median (the mean of the two middle values for an even count)
 */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? /** @type {number} */ (s[mid]) : (/** @type {number} */ (s[mid - 1]) + /** @type {number} */ (s[mid])) / 2;
}
