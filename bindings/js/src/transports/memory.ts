/**
 * An in-memory transport pair: two connected ends in one process, with
 * either framing. For tests and for wiring two components together without
 * a socket.
 *
 * @module
 */

import { defer } from '../runtime.js';
import type { Framing, Transport, TransportEvents, TransportInfo } from '../transport.js';

type Item = { kind: 'data'; data: Uint8Array } | { kind: 'close' } | { kind: 'error'; error: Error };

/** One end of a {@link memoryPair}. */
export class MemoryTransport implements Transport {
  readonly framing: Framing;
  readonly info: TransportInfo;
  /** The other end. */
  peer: MemoryTransport | undefined = undefined;
  #events: TransportEvents | undefined = undefined;
  readonly #inbox: Item[] = [];
  #paused = false;
  #scheduled = false;
  #ended = false;
  #sendClosed = false;
  /** Bytes this end has sent (for tests). */
  bytesSent = 0;

  constructor(framing: Framing, name: string) {
    this.framing = framing;
    this.info = { address: name };
  }

  #deliverSoon(): void {
    if (this.#scheduled || this.#events === undefined) {
      return;
    }
    this.#scheduled = true;
    defer(() => {
      this.#scheduled = false;
      this.#deliver();
    });
  }

  #deliver(): void {
    const events = this.#events;
    while (events !== undefined && !this.#paused && !this.#ended && this.#inbox.length > 0) {
      const item = this.#inbox.shift() as Item;
      switch (item.kind) {
        case 'data':
          events.onData(item.data);
          break;
        case 'close':
          this.#ended = true;
          events.onClose();
          break;
        case 'error':
          this.#ended = true;
          events.onError(item.error);
          break;
      }
    }
  }

  /** @internal */
  receive(item: Item): void {
    if (item.kind === 'error') {
      // A reset overtakes whatever was in flight.
      this.#inbox.length = 0;
    }
    this.#inbox.push(item);
    this.#deliverSoon();
  }

  start(events: TransportEvents): void {
    this.#events = events;
    this.#deliverSoon();
  }

  send(frames: readonly Uint8Array[]): Promise<void> {
    if (this.#sendClosed) {
      return Promise.reject(new Error('memory transport closed'));
    }
    for (const f of frames) {
      // The receiver keeps what it gets: hand it a copy.
      this.bytesSent += f.length;
      this.peer?.receive({ kind: 'data', data: f.slice() });
    }
    return Promise.resolve();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#deliverSoon();
  }

  close(): void {
    if (this.#sendClosed) {
      return;
    }
    this.#sendClosed = true;
    this.peer?.receive({ kind: 'close' });
  }

  abort(): void {
    if (this.#sendClosed) {
      return;
    }
    this.#sendClosed = true;
    this.#ended = true;
    this.peer?.receive({ kind: 'error', error: new Error('connection reset by peer') });
  }
}

/** Two connected in-memory transports: `[client end, server end]`. */
export function memoryPair(framing: Framing = 'stream'): [MemoryTransport, MemoryTransport] {
  const a = new MemoryTransport(framing, 'memory:client');
  const b = new MemoryTransport(framing, 'memory:server');
  a.peer = b;
  b.peer = a;
  return [a, b];
}
