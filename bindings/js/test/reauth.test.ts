/**
 * Re-authentication of a live connection (the built-in REAUTHENTICATE,
 * `docs/PROTOCOL.md` §10.4): a TypeScript client against a TypeScript server
 * with tokens and against the Rust reference peer.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  connect,
  ErrorCode,
  identityOf,
  RemoteError,
  Router,
  serve,
  TokenAuthenticator,
  type Identity,
} from '../src/node/index.js';
import { servePeer } from './interop.js';

const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdef';

async function refusedWith(p: Promise<unknown>, code: ErrorCode, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RemoteError, String(e));
    assert.equal(e.wireCode, code);
    assert.equal(e.message.endsWith(message), true, e.message);
    return true;
  });
}

describe('REAUTHENTICATE', { timeout: 120_000 }, () => {
  it('renews the identity of the same subject on a TypeScript server', async () => {
    const seen: (Identity | undefined)[] = [];
    const router = new Router().unary(1, (ctx, m) => {
      seen.push(identityOf(ctx.connection));
      return m.body;
    });
    const tokens = new TokenAuthenticator().token('alice', ALICE).token('bob', BOB);
    const server = await serve('tcp://127.0.0.1:0', router, { authenticator: tokens });
    try {
      const conn = await connect(server.endpoints[0] as string, { auth: new TextEncoder().encode(ALICE) });
      await conn.call(1, 'x');
      await conn.reauthenticate(ALICE);
      await refusedWith(conn.reauthenticate(BOB), ErrorCode.UNAUTHENTICATED, 're-authentication must name the same subject');
      await refusedWith(conn.reauthenticate('nope'), ErrorCode.UNAUTHENTICATED, 'invalid or missing token');
      await conn.call(1, 'y');
      assert.deepEqual(
        seen.map((i) => i?.subject),
        ['alice', 'alice'],
      );
      await conn.close();
    } finally {
      await server.close();
    }

    const plain = await serve('tcp://127.0.0.1:0', new Router());
    try {
      const conn = await connect(plain.endpoints[0] as string);
      await refusedWith(conn.reauthenticate(ALICE), ErrorCode.UNKNOWN_METHOD, 'this endpoint does not authenticate');
      await conn.close();
    } finally {
      await plain.close();
    }
  });

  it('renews a connection to the Rust peer, which checks the token', async () => {
    const peer = await servePeer(['--token', ALICE, 'tcp://127.0.0.1:0']);
    try {
      const conn = await connect(peer.endpoints[0] as string, { auth: new TextEncoder().encode(ALICE) });
      await conn.reauthenticate(ALICE);
      await assert.rejects(conn.reauthenticate(BOB), (e: unknown) => e instanceof RemoteError && e.wireCode === ErrorCode.UNAUTHENTICATED);
      const reply = await conn.call(1, 'still here');
      assert.equal(new TextDecoder().decode(reply.body), 'still here');
      await conn.close();
    } finally {
      await peer.stop();
    }
  });
});
