/**
 * A real browser: Debian's Chromium (`apt-get install -y chromium`; or
 * `$GATEWIRE_CHROMIUM`), driven by playwright-core, loads a page from a tiny
 * static server that imports the built ESM package (`dist/`, no bundler),
 * connects over WebSocket to the Rust interop peer and runs the interop
 * script — calls, a server stream, the server-initiated call (method 4 →
 * the page's method 100), an error, a deadline, an event round trip — and
 * reports back through `page.evaluate`. A second page connects to a
 * TypeScript server, which calls the page directly.
 */

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { chromium, type BrowserContext, type Page } from 'playwright-core';

import { serve, type Server } from '../src/node/index.js';
import { interopPeer, packageRoot, SCRIPT_CHECKS, servePeer, service, type PeerServer } from './interop.js';

const CHROMIUM = process.env['GATEWIRE_CHROMIUM'] ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
};

/** Serves `/` (the test page), `/page.js` and `/dist/**` (the built package) from disk. */
function staticServer(root: string): Promise<{ url: string; close: () => Promise<void> }> {
  const pageDir = join(root, 'test', 'browser');
  const distDir = join(root, 'dist');
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0] as string);
    let file: string | undefined;
    if (path === '/' || path === '/index.html') {
      file = join(pageDir, 'index.html');
    } else if (path === '/page.js') {
      file = join(pageDir, 'page.js');
    } else if (path.startsWith('/dist/')) {
      const candidate = normalize(join(distDir, path.slice('/dist/'.length)));
      if (candidate.startsWith(distDir + sep)) {
        file = candidate;
      }
    }
    const type = file === undefined ? undefined : MIME[extname(file)];
    if (file === undefined || type === undefined || !existsSync(file)) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}/`,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
}

interface InteropResult {
  passed: string[];
  agent: string | undefined;
  served100: number;
  rtt: number;
  gracefulClose: boolean;
  closeError: string | undefined;
  userAgent: string;
}

describe('in a real browser (Chromium)', { timeout: 180_000 }, () => {
  let context: BrowserContext;
  let profile: string;
  let site: { url: string; close: () => Promise<void> };
  let peer: PeerServer;
  const consoleLines: string[] = [];
  const pageErrors: string[] = [];

  async function openPage(): Promise<Page> {
    const page = await context.newPage();
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(site.url);
    await page.waitForFunction(() => (window as unknown as { gatewireReady?: boolean }).gatewireReady === true, null, {
      timeout: 30_000,
    });
    return page;
  }

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `no Chromium at ${CHROMIUM}: install Debian's (apt-get update && apt-get install -y chromium) or set GATEWIRE_CHROMIUM`,
      );
    }
    const root = packageRoot();
    assert.ok(existsSync(join(root, 'dist', 'index.js')), 'dist/ is built (npm run build)');
    interopPeer();
    peer = await servePeer(['ws://127.0.0.1:0/gw']);
    site = await staticServer(root);
    profile = mkdtempSync(join(tmpdir(), 'gw-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      timeout: 60_000,
    });
  });

  after(async () => {
    await context?.close();
    await site?.close();
    const code = await peer?.stop();
    if (profile !== undefined) {
      rmSync(profile, { recursive: true, force: true });
    }
    assert.equal(code, 0);
  });

  it('runs the interop script against the Rust peer over WebSocket, answering its call', async () => {
    const page = await openPage();
    const url = peer.endpoints[0] as string;
    let result: InteropResult;
    try {
      result = await page.evaluate(
        (u) => (window as unknown as { gatewire: { interop(u: string): Promise<InteropResult> } }).gatewire.interop(u),
        url,
      );
    } catch (e) {
      throw new Error(`${String(e)}\nconsole:\n${consoleLines.join('\n')}\nerrors:\n${pageErrors.join('\n')}`);
    }
    assert.deepEqual(result.passed, SCRIPT_CHECKS);
    assert.match(result.agent ?? '', /^gatewire-rust\//);
    assert.equal(result.served100, 1, 'the page answered the server-initiated call (method 4 -> 100) once');
    assert.ok(result.rtt >= 0);
    assert.equal(result.gracefulClose, true, result.closeError);
    assert.match(result.userAgent, /Chrome\//);
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  it('a TypeScript gateway calls the page', async () => {
    const gateway: Server = await serve('ws://127.0.0.1:0/gw', service());
    try {
      const page = await openPage();
      const hello = await page.evaluate(
        (u) =>
          (window as unknown as { gatewire: { hold(u: string): Promise<{ agent?: string }> } }).gatewire.hold(u),
        gateway.endpoints[0] as string,
      );
      assert.equal(hello.agent, 'gatewire-js/0.1.0');
      const [conn] = gateway.connections();
      assert.ok(conn !== undefined);
      assert.match(conn.transportInfo.address ?? '', /^ws:\/\/127\.0\.0\.1:\d+\/gw$/);
      const replies = await Promise.all(
        ['a', 'b', 'c'].map(async (s) => new TextDecoder().decode((await conn.call(100, s, { timeoutMs: 5_000 })).body)),
      );
      assert.deepEqual(replies, ['client:a', 'client:b', 'client:c']);
      const done = await page.evaluate(() =>
        (window as unknown as { gatewire: { release(): Promise<{ served100: number }> } }).gatewire.release(),
      );
      assert.ok(done.served100 >= 3);
      assert.equal(await conn.closed, undefined, 'the page closed gracefully');
      assert.deepEqual(pageErrors, []);
      await page.close();
    } finally {
      await gateway.close();
    }
  });
});
