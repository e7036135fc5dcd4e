/**
 * The few host facilities the driver needs — a monotonic clock, timers,
 * microtasks and abort signals — reached through `globalThis` with minimal
 * structural types, so the browser-safe part of the package compiles
 * without DOM or Node typings (and so cannot use a Node-only API by
 * accident). Every browser, Node ≥ 20, Deno and Bun has them.
 *
 * @module
 */

/**
 * The part of the standard `AbortSignal` the driver uses. A DOM or Node
 * `AbortSignal` fits it.
 */
export interface AbortSignalLike {
  /** Whether the signal has fired. */
  readonly aborted: boolean;
  /** Why it fired. */
  readonly reason?: unknown;
  /** Subscribes to `abort`. */
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  /** Unsubscribes from `abort`. */
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** The part of the standard `AbortController` the driver uses. */
export interface AbortControllerLike {
  /** The controller's signal. */
  readonly signal: AbortSignalLike;
  /** Fires the signal. */
  abort(reason?: unknown): void;
}

interface Host {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  queueMicrotask?: (callback: () => void) => void;
  performance?: { now(): number };
  AbortController?: new () => AbortControllerLike;
}

const host = globalThis as unknown as Host;

/** Milliseconds from an arbitrary origin, monotonic where the host allows. */
export function now(): number {
  return host.performance !== undefined ? host.performance.now() : Date.now();
}

/** Longest delay `setTimeout` honours (a larger one fires at once). */
const MAX_DELAY = 0x7fff_ffff;

/** A one-shot timer handle. */
export type TimerHandle = unknown;

/** Runs `callback` after `ms` milliseconds (clamped to what hosts allow). */
export function setTimer(callback: () => void, ms: number): TimerHandle {
  return host.setTimeout(callback, Math.min(Math.max(0, Math.ceil(ms)), MAX_DELAY));
}

/** Cancels a timer from {@link setTimer}. */
export function clearTimer(handle: TimerHandle): void {
  host.clearTimeout(handle);
}

/** Runs `callback` once the current job ends (never re-entrantly). */
export function defer(callback: () => void): void {
  if (host.queueMicrotask !== undefined) {
    host.queueMicrotask(callback);
  } else {
    void Promise.resolve().then(callback);
  }
}

/** A minimal signal, for hosts without `AbortController`. */
class FallbackSignal implements AbortSignalLike {
  aborted = false;
  reason: unknown = undefined;
  readonly #listeners = new Set<() => void>();

  addEventListener(_type: 'abort', listener: () => void): void {
    this.#listeners.add(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.#listeners.delete(listener);
  }

  fire(reason: unknown): void {
    if (this.aborted) {
      return;
    }
    this.aborted = true;
    this.reason = reason;
    for (const l of [...this.#listeners]) {
      l();
    }
    this.#listeners.clear();
  }
}

/** A new abort controller: the host's own when it has one. */
export function abortController(): AbortControllerLike {
  if (host.AbortController !== undefined) {
    return new host.AbortController();
  }
  const signal = new FallbackSignal();
  return { signal, abort: (reason?: unknown) => signal.fire(reason) };
}

/** A promise with its settle functions. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** A new {@link Deferred}. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
