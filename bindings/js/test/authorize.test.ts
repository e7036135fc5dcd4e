/**
 * Per-call authorization on a TypeScript server (`serve`'s `authorizer`),
 * as in the Rust runtime and the Python package: decided before the method
 * is looked up, for calls and streams, never for one-way events; expired
 * identities refused per call.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  ConfigError,
  connect,
  ErrorCode,
  RemoteError,
  Router,
  serve,
  Status,
  TokenAuthenticator,
  type Connection,
  type Identity,
} from '../src/node/index.js';
import { authenticateHook, authorizeHook } from '../src/node/auth.js';

async function deniedWith(p: Promise<unknown>, code: number, message?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RemoteError, String(e));
    assert.equal(e.wireCode, code);
    if (message !== undefined) {
      assert.equal(e.message.endsWith(message), true, e.message);
    }
    return true;
  });
}

describe('authorizer', { timeout: 60_000 }, () => {
  it('denies before the method is looked up, with PERMISSION_DENIED or the thrown status', async () => {
    const ran: number[] = [];
    const router = new Router()
      .unary(1, (_ctx, m) => {
        ran.push(1);
        return m.body;
      })
      .unary(1000, (_ctx, m) => {
        ran.push(1000);
        return m.body;
      });
    const authorizer = (identity: Identity | undefined, method: number): boolean => {
      if (method === 2000) {
        throw new Status(0x8002, 'custom denial');
      }
      return method < 1000 || identity?.subject === 'admin';
    };
    const tokens = new TokenAuthenticator().token('user', 'user-token').token('admin', 'admin-token');
    const server = await serve('tcp://127.0.0.1:0', router, { authenticator: tokens, authorizer });
    try {
      const user = await connect(server.endpoints[0] as string, { auth: new TextEncoder().encode('user-token') });
      assert.equal(new TextDecoder().decode((await user.call(1, 'a')).body), 'a');
      for (const method of [1000, 1001]) {
        // The same answer whether or not the method exists.
        await deniedWith(user.call(method, ''), ErrorCode.PERMISSION_DENIED, `not allowed to call method ${method}`);
      }
      await deniedWith(user.call(2000, ''), 0x8002, 'custom denial');
      await user.close();
      const admin = await connect(server.endpoints[0] as string, { auth: new TextEncoder().encode('admin-token') });
      assert.equal(new TextDecoder().decode((await admin.call(1000, 'b')).body), 'b');
      await admin.close();
    } finally {
      await server.close();
    }
    assert.deepEqual(ran, [1, 1000]);
  });

  it('denies streams, not one-way events, and fails closed when it throws', async () => {
    const events: string[] = [];
    let streams = 0;
    let eventSeen: () => void = () => undefined;
    const seen = new Promise<void>((resolve) => {
      eventSeen = resolve;
    });
    const router = new Router()
      .stream(3, async (_ctx, _first, _rx, tx) => {
        streams += 1;
        await tx.send('never');
      })
      .event(4, (_ctx, m) => {
        events.push(new TextDecoder().decode(m.body));
        eventSeen();
      })
      .unary(5, (_ctx, m) => m.body);
    const authorizer = (_identity: Identity | undefined, method: number): boolean => {
      if (method === 5) {
        throw new Error('a bug in the authorizer');
      }
      return false;
    };
    const server = await serve('tcp://127.0.0.1:0', router, { authorizer });
    try {
      const conn = await connect(server.endpoints[0] as string);
      const rx = await conn.serverStream(3);
      await deniedWith(rx.next(), ErrorCode.PERMISSION_DENIED);
      await deniedWith(conn.call(5, ''), ErrorCode.PERMISSION_DENIED, 'authorization failed');
      await conn.emit(4, 'hello');
      await seen;
      assert.deepEqual(events, ['hello']);
      assert.equal(streams, 0);
      await conn.close();
    } finally {
      await server.close();
    }
  });

  it('refuses calls from an identity that has expired, before the authorizer', (t) => {
    const transportInfo = { address: 'test' };
    const connection = { transportInfo } as unknown as Connection;
    let asked = 0;
    const authorizer = (): boolean => {
      asked += 1;
      return true;
    };
    assert.equal(authorizeHook(authorizer)({ method: 1, connection }), true);
    assert.equal(authorizeHook(undefined)({ method: 1, connection }), true);
    assert.equal(authorizeHook(() => false)({ method: 1, connection }), false);
    // The handshake records an identity valid for another minute...
    const start = Date.now();
    const authenticate = authenticateHook({
      authenticate: (): Identity => ({ subject: 'late', method: 'custom', expiresAt: new Date(start + 60_000) }),
    });
    assert.equal(authenticate({ auth: undefined, transport: transportInfo, agent: undefined }), true);
    assert.equal(authorizeHook(authorizer)({ method: 1, connection }), true);
    assert.equal(asked, 2);
    // ...which has passed by the next call.
    t.mock.method(Date, 'now', () => start + 61_000);
    assert.throws(
      () => authorizeHook(authorizer)({ method: 1, connection }),
      (e: unknown) => e instanceof Status && e.code === ErrorCode.UNAUTHENTICATED && e.statusMessage === 'credentials expired',
    );
    assert.equal(asked, 2);
  });

  it('is refused together with a raw authorize hook', async () => {
    await assert.rejects(
      serve('tcp://127.0.0.1:0', new Router(), { authorizer: () => true, authorize: () => true }),
      ConfigError,
    );
  });
});
