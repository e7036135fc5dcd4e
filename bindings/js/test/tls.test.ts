/**
 * TLS (`tls://`, `wss://`) and tokens in `gatewire/node`, over real sockets
 * with a PKI made for the run (`openssl`):
 *
 * - the TypeScript interop script against the Rust reference peer and a
 *   Python server, both over `tls://` and `wss://`;
 * - `interop-peer client` against a TypeScript TLS server;
 * - typed refusals: wrong CA, wrong name, no `gatewire/1` ALPN;
 * - tokens and client certificates, accepted and refused, both ways with
 *   the Rust peer (refusal code checked on the refused side);
 * - the browser entry point's WebSocket transport over `wss://`.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as tls from 'node:tls';

import WebSocket from 'ws';

import { connect as connectBrowser, type WebSocketConstructor } from '../src/index.js';
import {
  AlpnError,
  AnyAuthenticator,
  CertificateVerifyError,
  ConfigError,
  connect,
  ConnectionClosedError,
  ErrorCode,
  HostnameMismatchError,
  identityOf,
  MtlsAuthenticator,
  Router,
  serve,
  Status,
  TlsError,
  tlsInfoOf,
  TokenAuthenticator,
  type Connection,
  type Identity,
  type Server,
  type TlsClientOptions,
} from '../src/node/index.js';
import { callbacks, EventInbox, SCRIPT_CHECKS, script, servePeer, service, type PeerServer } from './interop.js';
import { CLIENT_NAME, makePki, runRustClient, servePython, type Pki } from './tls-support.js';

const TOKEN = 'interop-token-5f1b0c9e7d2a4b38';
const dec = new TextDecoder();

let pki: Pki;

before(() => {
  pki = makePki();
});

after(() => {
  pki.cleanup();
});

function trust(extra: Partial<TlsClientOptions> = {}): TlsClientOptions {
  return { caFile: pki.ca, ...extra };
}

async function whoami(conn: Connection): Promise<string> {
  return dec.decode((await conn.call(9, '')).body);
}

async function runScript(url: string, tls: TlsClientOptions): Promise<Connection> {
  const inbox = new EventInbox();
  const conn = await connect(url, { router: callbacks(inbox), tls });
  assert.deepEqual(await script(conn, inbox), SCRIPT_CHECKS);
  return conn;
}

describe('TypeScript client -> Rust interop-peer over TLS', { timeout: 180_000 }, () => {
  let peer: PeerServer;

  before(async () => {
    peer = await servePeer(['--cert', pki.serverCert, '--key', pki.serverKey, 'tls://127.0.0.1:0', 'wss://127.0.0.1:0/gw']);
  });

  after(async () => {
    assert.equal(await peer.stop(), 0, 'interop-peer serve exits cleanly');
  });

  for (const [i, [scheme, alpn]] of [
    ['tls', 'gatewire/1'],
    ['wss', 'http/1.1'],
  ].entries()) {
    it(`runs the interop script over ${scheme}://`, async () => {
      const url = peer.endpoints[i] as string;
      assert.ok(url.startsWith(`${scheme}://`), url);
      const conn = await runScript(url, trust());
      assert.match(conn.peer?.agent ?? '', /^gatewire-rust\//);
      const info = tlsInfoOf(conn.transportInfo);
      assert.equal(info?.version, 'TLSv1.3');
      assert.equal(info?.alpn, alpn);
      assert.equal(info?.serverName, '127.0.0.1');
      assert.deepEqual(info?.peerCertificate?.dnsNames, ['localhost']);
      assert.equal(info?.peerCertificate?.commonName, 'gatewire test server');
      assert.equal(await whoami(conn), 'anonymous:');
      await conn.close();
      assert.equal(await conn.closed, undefined, 'graceful close');
    });

    it(`verifies the server's certificate and name over ${scheme}://`, async () => {
      const url = peer.endpoints[i] as string;
      const named = await connect(url, { tls: trust({ serverName: 'localhost' }) });
      assert.equal(tlsInfoOf(named.transportInfo)?.serverName, 'localhost');
      await named.close();
      await assert.rejects(connect(url, { tls: { caFile: pki.otherCa } }), (e: unknown) => {
        assert.ok(e instanceof CertificateVerifyError && !(e instanceof HostnameMismatchError), String(e));
        assert.ok(e.isClosed && e.code === 'rpc.transport');
        return true;
      });
      // Node's bundled roots do not know the test CA either.
      await assert.rejects(connect(url), (e: unknown) => e instanceof CertificateVerifyError);
      await assert.rejects(connect(url, { tls: trust({ serverName: 'wrong.example' }) }), (e: unknown) => {
        assert.ok(e instanceof HostnameMismatchError, String(e));
        assert.equal(e.tlsCode, 'ERR_TLS_CERT_ALTNAME_INVALID');
        return true;
      });
    });
  }
});

describe('tokens and client certificates with the Rust interop-peer', { timeout: 180_000 }, () => {
  it('a Rust server requiring a token accepts ours and refuses others with UNAUTHENTICATED', async () => {
    const peer = await servePeer([
      '--cert', pki.serverCert, '--key', pki.serverKey, '--token', TOKEN, 'tls://127.0.0.1:0', 'wss://127.0.0.1:0/gw',
    ]);
    try {
      for (const url of peer.endpoints) {
        const conn = await connect(url, { auth: TOKEN, tls: trust() });
        assert.equal(await whoami(conn), 'token:interop');
        await conn.close();
        for (const auth of [`${TOKEN}x`, new Uint8Array(0), undefined]) {
          await assert.rejects(connect(url, { auth, tls: trust() }), (e: unknown) => {
            assert.ok(e instanceof ConnectionClosedError, String(e));
            assert.equal(e.wireCode, ErrorCode.UNAUTHENTICATED);
            assert.equal(e.detail, 'invalid or missing token');
            return true;
          });
        }
      }
    } finally {
      assert.equal(await peer.stop(), 0);
    }
  });

  it('a Rust server requiring client certificates accepts ours and refuses others', async () => {
    const peer = await servePeer([
      '--cert', pki.serverCert, '--key', pki.serverKey, '--client-ca', pki.ca, 'tls://127.0.0.1:0', 'wss://127.0.0.1:0/gw',
    ]);
    try {
      for (const url of peer.endpoints) {
        const conn = await connect(url, { tls: trust({ certFile: pki.clientCert, keyFile: pki.clientKey }) });
        assert.equal(await whoami(conn), `certificate:${CLIENT_NAME}`);
        await conn.close();
        for (const tls of [trust(), trust({ certFile: pki.strangerCert, keyFile: pki.strangerKey })]) {
          // rustls answers with an alert once our side of the TLS 1.3
          // handshake is done: a TlsError, directly or as the cause.
          await assert.rejects(connect(url, { tls }), (e: unknown) => {
            const tlsError = e instanceof TlsError ? e : (e as { cause?: unknown }).cause;
            assert.ok(tlsError instanceof TlsError, String(e));
            assert.match(tlsError.tlsCode ?? '', /^ERR_SSL_TLSV1[3]?_ALERT_(CERTIFICATE_REQUIRED|UNKNOWN_CA)$/);
            return true;
          });
        }
      }
    } finally {
      assert.equal(await peer.stop(), 0);
    }
  });
});

function recordIdentities(seen: (Identity | undefined)[]): Router {
  const router = service();
  const echo = router.unaryHandler(1);
  assert.ok(echo !== undefined);
  return router.unary(1, (ctx, m) => {
    seen.push(identityOf(ctx.connection));
    return echo(ctx, m);
  });
}

describe('Rust interop-peer client -> TypeScript TLS server', { timeout: 180_000 }, () => {
  let server: Server;

  before(async () => {
    server = await serve(['tls://127.0.0.1:0', 'wss://127.0.0.1:0/gw'], service(), {
      tls: { certFile: pki.serverCert, keyFile: pki.serverKey },
    });
  });

  after(async () => {
    await server.close();
  });

  for (const [i, scheme] of ['tls', 'wss'].entries()) {
    it(`passes interop-peer client over ${scheme}://`, async () => {
      const url = server.endpoints[i] as string;
      assert.ok(url.startsWith(`${scheme}://`), url);
      const ok = await runRustClient(['--ca', pki.ca, url]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout.trim(), 'ok');
      const wrongName = await runRustClient(['--ca', pki.ca, '--server-name', 'wrong.example', url]);
      assert.equal(wrongName.code, 1);
      assert.match(wrongName.stderr, /connect failed/);
    });
  }

  it('checks tokens of the Rust client and gives handlers the identity', async () => {
    const seen: (Identity | undefined)[] = [];
    const s = await serve('tls://127.0.0.1:0', recordIdentities(seen), {
      tls: { certFile: pki.serverCert, keyFile: pki.serverKey },
      authenticator: new TokenAuthenticator().token('rust-client', TOKEN),
    });
    try {
      const url = s.endpoints[0] as string;
      const ok = await runRustClient(['--ca', pki.ca, '--token', TOKEN, url]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.ok(seen.length > 0);
      for (const identity of seen) {
        assert.deepEqual(identity, { subject: 'rust-client', method: 'token' });
      }
      for (const args of [['--token', 'not-the-token'], []]) {
        const refused = await runRustClient(['--ca', pki.ca, ...args, url]);
        assert.equal(refused.code, 1);
        assert.equal(refused.stdout, '');
        assert.match(refused.stderr, /connect failed with code UNAUTHENTICATED \(0x0008\)/);
        assert.match(refused.stderr, /invalid or missing token/);
      }
    } finally {
      await s.close();
    }
  });

  it('requires and identifies the Rust client certificate', async () => {
    const seen: (Identity | undefined)[] = [];
    const s = await serve('tls://127.0.0.1:0', recordIdentities(seen), {
      tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.ca },
      authenticator: new MtlsAuthenticator(),
    });
    try {
      const url = s.endpoints[0] as string;
      const ok = await runRustClient(['--ca', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey, url]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(seen[0]?.subject, CLIENT_NAME);
      assert.equal(seen[0]?.method, 'certificate');
      assert.ok((seen[0]?.expiresAt?.getTime() ?? 0) > Date.now());
      for (const args of [[], ['--cert', pki.strangerCert, '--key', pki.strangerKey]]) {
        const refused = await runRustClient(['--ca', pki.ca, ...args, url]);
        assert.equal(refused.code, 1, refused.stdout);
        assert.match(refused.stderr, /connect failed/);
      }
    } finally {
      await s.close();
    }
  });
});

describe('TypeScript client -> Python TLS server', { timeout: 180_000 }, () => {
  let python: PeerServer;

  before(async () => {
    python = await servePython([pki.serverCert, pki.serverKey, '--token', TOKEN, 'tls://127.0.0.1:0', 'wss://127.0.0.1:0/gw']);
  });

  after(async () => {
    assert.equal(await python.stop(), 0, 'the Python server exits cleanly');
  });

  for (const [i, scheme] of ['tls', 'wss'].entries()) {
    it(`runs the interop script over ${scheme}:// with a token`, async () => {
      const url = python.endpoints[i] as string;
      assert.ok(url.startsWith(`${scheme}://`), url);
      const inbox = new EventInbox();
      const conn = await connect(url, { router: callbacks(inbox), tls: trust(), auth: TOKEN });
      assert.match(conn.peer?.agent ?? '', /^gatewire-python\//);
      assert.deepEqual(await script(conn, inbox), SCRIPT_CHECKS);
      assert.equal(tlsInfoOf(conn.transportInfo)?.peerCertificate?.name, 'gatewire test server');
      await conn.close();
      assert.equal(await conn.closed, undefined, 'graceful close');
      await assert.rejects(
        connect(url, { tls: trust(), auth: 'wrong' }),
        (e: unknown) => e instanceof ConnectionClosedError && e.wireCode === ErrorCode.UNAUTHENTICATED,
      );
      await assert.rejects(connect(url, { tls: { caFile: pki.otherCa }, auth: TOKEN }), CertificateVerifyError);
    });
  }
});

describe('TypeScript TLS client and server', { timeout: 60_000 }, () => {
  it('mTLS: required certificates identify the client; others are refused', async () => {
    const seen: (Identity | undefined)[] = [];
    const s = await serve(['tls://127.0.0.1:0', 'wss://127.0.0.1:0/gw'], recordIdentities(seen), {
      tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.ca },
      authenticator: new MtlsAuthenticator([CLIENT_NAME]),
    });
    try {
      for (const url of s.endpoints) {
        const conn = await connect(url, { tls: trust({ certFile: pki.clientCert, keyFile: pki.clientKey }) });
        await conn.call(1, 'me');
        await conn.close();
        for (const tls of [trust(), trust({ certFile: pki.strangerCert, keyFile: pki.strangerKey })]) {
          await assert.rejects(connect(url, { tls }), (e: unknown) => e instanceof Error);
        }
      }
      assert.equal(seen.length, 2);
      for (const identity of seen) {
        assert.equal(identity?.subject, CLIENT_NAME);
      }
    } finally {
      await s.close();
    }
  });

  it('optional client certificates: an authenticator decides, a sent certificate is still verified', async () => {
    const seen: (Identity | undefined)[] = [];
    const router = recordIdentities(seen).unary(2, (ctx) => {
      const cert = tlsInfoOf(ctx.connection.transportInfo)?.peerCertificate;
      return `${cert?.name ?? ''}|${cert?.uris.join(',') ?? ''}`;
    });
    const s = await serve('tls://127.0.0.1:0', router, {
      tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.ca, clientAuthOptional: true },
      authenticator: new AnyAuthenticator(new MtlsAuthenticator(), new TokenAuthenticator().token('app', 'app-token')),
    });
    try {
      const url = s.endpoints[0] as string;
      const withCert = await connect(url, { tls: trust({ certFile: pki.clientCert, keyFile: pki.clientKey }) });
      await withCert.call(1, '');
      assert.equal(dec.decode((await withCert.call(2, '')).body), `${CLIENT_NAME}|spiffe://test/client-1`);
      await withCert.close();
      const withToken = await connect(url, { tls: trust(), auth: 'app-token' });
      await withToken.call(1, '');
      await withToken.close();
      assert.deepEqual(
        seen.map((i) => i?.subject),
        [CLIENT_NAME, 'app'],
      );
      await assert.rejects(connect(url, { tls: trust() }), (e: unknown) => {
        assert.ok(e instanceof ConnectionClosedError);
        assert.equal(e.wireCode, ErrorCode.UNAUTHENTICATED);
        assert.equal(e.detail, 'a client certificate is required');
        return true;
      });
      await assert.rejects(
        connect(url, { tls: trust({ certFile: pki.strangerCert, keyFile: pki.strangerKey }) }),
        (e: unknown) => e instanceof Error,
      );
    } finally {
      await s.close();
    }
  });

  it('a tls:// client refuses a server that does not select gatewire/1', async () => {
    const identity = { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) };
    // Without ALPN the handshake completes and the client refuses; with
    // ALPN but not gatewire/1, the server itself ends the handshake.
    for (const [options, expected] of [
      [identity, AlpnError],
      [{ ...identity, ALPNProtocols: ['http/1.1'] }, TlsError],
    ] as const) {
      const sockets = new Set<tls.TLSSocket>();
      const server = tls.createServer(options, (socket) => sockets.add(socket.on('error', () => undefined)));
      await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
      try {
        const port = (server.address() as AddressInfo).port;
        await assert.rejects(connect(`tls://127.0.0.1:${port}`, { tls: trust() }), (e: unknown) => {
          assert.ok(e instanceof expected, String(e));
          return true;
        });
      } finally {
        for (const socket of sockets) {
          socket.destroy();
        }
        server.close();
      }
    }
  });

  it('a tls:// server drops a client that does not offer gatewire/1', async () => {
    const s = await serve('tls://127.0.0.1:0', service(), { tls: { certFile: pki.serverCert, keyFile: pki.serverKey } });
    try {
      const port = Number(new URL((s.endpoints[0] as string).replace('tls:', 'http:')).port);
      const socket = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(pki.ca), servername: 'localhost' });
      socket.on('error', () => undefined);
      await once(socket, 'secureConnect');
      // Closed without a word, not even a GOAWAY.
      const received: Buffer[] = [];
      socket.on('data', (d: Buffer) => received.push(d));
      await once(socket, 'close');
      assert.equal(Buffer.concat(received).length, 0);
      assert.equal(s.connections().length, 0);
    } finally {
      await s.close();
    }
  });

  it('refuses what cannot work: no TLS configuration, unreadable files, both hooks', async () => {
    await assert.rejects(serve('tls://127.0.0.1:0', new Router()), (e: unknown) => {
      assert.ok(e instanceof ConfigError && /tls option/.test(e.message), String(e));
      return true;
    });
    await assert.rejects(
      serve('wss://127.0.0.1:0/', new Router(), { tls: { certFile: '/nonexistent/cert.pem', keyFile: pki.serverKey } }),
      (e: unknown) => e instanceof ConfigError && e.message.includes('/nonexistent/cert.pem'),
    );
    await assert.rejects(
      connect('tls://127.0.0.1:1', { tls: { caFile: '/nonexistent/ca.pem' } }),
      (e: unknown) => e instanceof ConfigError,
    );
    await assert.rejects(
      serve('tcp://127.0.0.1:0', new Router(), {
        authenticator: new TokenAuthenticator(),
        authenticate: () => true,
      }),
      ConfigError,
    );
  });

  it('the browser entry point dials wss:// with the host WebSocket', async () => {
    const s = await serve('wss://127.0.0.1:0/gw', service(), { tls: { certFile: pki.serverCert, keyFile: pki.serverKey } });
    const ca = readFileSync(pki.ca);
    // Stands in for a browser that trusts the test CA.
    class TrustingWebSocket extends WebSocket {
      constructor(url: string, protocols: string | string[]) {
        super(url, protocols, { ca });
      }
    }
    try {
      const url = s.endpoints[0] as string;
      const inbox = new EventInbox();
      const conn = await connectBrowser(url, {
        router: callbacks(inbox),
        WebSocket: TrustingWebSocket as unknown as WebSocketConstructor,
      });
      assert.equal(conn.transportInfo.address, url);
      assert.deepEqual(await script(conn, inbox), SCRIPT_CHECKS);
      await conn.close();
    } finally {
      await s.close();
    }
  });
});

describe('TokenAuthenticator', () => {
  const info = { address: 'test' };

  it('compares digests of tokens of any length', () => {
    const tokens = new TokenAuthenticator().token('a', 'short').token('b', new TextEncoder().encode('a-much-longer-token'));
    assert.deepEqual(tokens.authenticate(new TextEncoder().encode('short')), { subject: 'a', method: 'token' });
    assert.equal(tokens.authenticate(new TextEncoder().encode('a-much-longer-token')).subject, 'b');
    for (const wrong of ['shor', 'shortt', '', 'x'.repeat(4096)]) {
      assert.throws(
        () => tokens.authenticate(new TextEncoder().encode(wrong)),
        (e: unknown) => e instanceof Status && e.code === ErrorCode.UNAUTHENTICATED,
      );
    }
    assert.throws(() => tokens.authenticate(undefined), Status);
    assert.equal(tokens.size, 2);
    const shown = String(new TokenAuthenticator().token('alice', 'hunter2-token'));
    assert.ok(shown.includes('alice') && !shown.includes('hunter2'), shown);
  });

  it('never matches an empty token, and takes digests in hex', async () => {
    const { createHash } = await import('node:crypto');
    assert.throws(() => new TokenAuthenticator().token('empty', '').authenticate(new Uint8Array(0)), Status);
    const hex = createHash('sha256').update('secret').digest('hex').toUpperCase();
    assert.equal(new TokenAuthenticator().sha256Hex('s', hex).authenticate(new TextEncoder().encode('secret')).subject, 's');
    assert.throws(() => new TokenAuthenticator().sha256Hex('s', 'abc'), ConfigError);
    assert.throws(() => new TokenAuthenticator().sha256Hex('s', 'zz'.repeat(32)), ConfigError);
    assert.throws(() => new TokenAuthenticator().sha256('s', new Uint8Array(31)), ConfigError);
    assert.throws(() => new MtlsAuthenticator().authenticate(undefined, info), Status);
  });
});
