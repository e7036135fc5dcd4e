/**
 * Interop with the Rust reference peer (`interop-peer`, built with
 * `cargo build -p gatewire-interop` when missing), both directions, on
 * every transport: the TypeScript script against `interop-peer serve`, and
 * `interop-peer client` against a TypeScript server of the same service.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { connect, serve, type Server } from '../src/node/index.js';
import {
  callbacks,
  EventInbox,
  interopPeer,
  runPeerClient,
  SCRIPT_CHECKS,
  script,
  servePeer,
  service,
  socketDir,
  type PeerServer,
} from './interop.js';

describe('TypeScript client -> Rust interop-peer serve', { timeout: 180_000 }, () => {
  let peer: PeerServer;
  let sockets: { dir: string; cleanup: () => void };

  before(async () => {
    interopPeer();
    sockets = socketDir();
    peer = await servePeer(['tcp://127.0.0.1:0', `unix://${sockets.dir}/s.sock`, 'ws://127.0.0.1:0/gw']);
  });

  after(async () => {
    const code = await peer.stop();
    sockets.cleanup();
    assert.equal(code, 0, 'interop-peer serve exits cleanly when its stdin closes');
  });

  for (const [i, scheme] of ['tcp', 'unix', 'ws'].entries()) {
    it(`runs the interop script over ${scheme}`, { timeout: 60_000 }, async () => {
      const url = peer.endpoints[i] as string;
      assert.ok(url.startsWith(`${scheme}://`), url);
      const inbox = new EventInbox();
      const conn = await connect(url, { router: callbacks(inbox) });
      assert.match(conn.peer?.agent ?? '', /^gatewire-rust\//);
      assert.equal(conn.peer?.compression, false, 'we never offer zstd, so it is never negotiated');
      const passed = await script(conn, inbox);
      assert.deepEqual(passed, SCRIPT_CHECKS);
      await conn.close();
      assert.equal(await conn.closed, undefined, 'graceful close');
    });
  }
});

describe('Rust interop-peer client -> TypeScript server', { timeout: 180_000 }, () => {
  let server: Server;
  let sockets: { dir: string; cleanup: () => void };

  before(async () => {
    interopPeer();
    sockets = socketDir();
    server = await serve(['tcp://127.0.0.1:0', `unix://${sockets.dir}/s.sock`, 'ws://127.0.0.1:0/gw'], service());
  });

  after(async () => {
    await server.close();
    sockets.cleanup();
  });

  for (const [i, scheme] of ['tcp', 'unix', 'ws'].entries()) {
    it(`passes interop-peer client over ${scheme}`, { timeout: 90_000 }, async () => {
      const url = server.endpoints[i] as string;
      assert.ok(url.startsWith(`${scheme}://`), url);
      const { code, output } = await runPeerClient(url);
      assert.equal(code, 0, output);
      assert.equal(output.trim(), 'ok');
    });
  }
});
