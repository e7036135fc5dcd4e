// The headless desktop of the demo: Debian's Chromium driven by
// playwright-core (from bindings/js/node_modules) opens the page the gateway
// serves, relays the page's console lines prefixed `[desktop]`, and follows
// the commands demo.py writes on stdin, one per line:
//
//   reload        reload the page and wait until it is done again
//   inspect       report the page's charts
//   click KEY     click the middle of chart KEY, as a user would
//   await-close   wait until the gateway has closed the page's connection
//   exit          close the browser and exit
//
// Answers are single lines `@<what> <json>` on stdout; `@error <text>` ends
// the run with status 1. Every wait is bounded by --timeout-ms.
//
// Usage: node desktop.mjs URL [--chromium PATH] [--timeout-ms MS] [--query K=V]

import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(ROOT, 'bindings', 'js', 'package.json'));
const { chromium } = require('playwright-core');

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

function parseArgs(argv) {
  const opts = {
    url: undefined,
    chromium: process.env.GATEWIRE_CHROMIUM ?? '/usr/bin/chromium',
    timeoutMs: 30_000,
    query: 'auto',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--chromium') opts.chromium = argv[++i];
    else if (a === '--timeout-ms') opts.timeoutMs = Number(argv[++i]);
    else if (a === '--query') opts.query += `&${argv[++i]}`;
    else if (opts.url === undefined) opts.url = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (opts.url === undefined || !(opts.timeoutMs > 0)) {
    throw new Error('usage: node desktop.mjs URL [--chromium PATH] [--timeout-ms MS] [--query K=V]');
  }
  return opts;
}

function say(what, value) {
  process.stdout.write(`@${what} ${JSON.stringify(value)}\n`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const profile = mkdtempSync(join(tmpdir(), 'gw-pair-chromium-'));
  let context;
  const pageErrors = [];
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: opts.chromium,
      headless: true,
      args: ARGS,
      timeout: opts.timeoutMs,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(opts.timeoutMs);
    page.on('console', (m) => {
      const kind = m.type() === 'log' ? '' : `${m.type()}: `;
      process.stdout.write(`[desktop] ${kind}${m.text()}\n`);
    });
    page.on('pageerror', (e) => {
      pageErrors.push(String(e));
      process.stdout.write(`[desktop] page error: ${String(e)}\n`);
    });
    const version = context.browser()?.version() ?? 'chromium';
    const url = `${opts.url}?${opts.query}`;
    process.stdout.write(`[chromium] ${version} headless, fresh profile; opening ${url}\n`);

    const untilDone = async (started) => {
      const handle = await page.waitForFunction(
        () => window.pairDone ?? (window.pairFailed === undefined ? undefined : { failed: window.pairFailed }),
        null,
        { timeout: opts.timeoutMs },
      );
      const result = await handle.jsonValue();
      if (result.failed !== undefined) {
        throw new Error(`the page failed: ${result.failed}`);
      }
      say('page', { ...result, loadMs: Math.round(performance.now() - started), pageErrors: pageErrors.length });
    };

    let started = performance.now();
    await page.goto(url);
    await untilDone(started);

    const lines = createInterface({ input: process.stdin });
    for await (const line of lines) {
      const [command, arg] = line.trim().split(/\s+/, 2);
      if (command === 'reload') {
        started = performance.now();
        await page.reload();
        await untilDone(started);
      } else if (command === 'inspect') {
        const charts = await page.evaluate(() => window.pair?.charts() ?? []);
        const canvases = await page.locator('figure.chart canvas').count();
        say('charts', { charts, canvases, pageErrors: pageErrors.length });
      } else if (command === 'click') {
        const canvas = page.locator(`figure.chart[data-key="${arg}"] canvas`);
        const box = await canvas.boundingBox();
        if (box === null) {
          throw new Error(`no chart ${arg} on the page`);
        }
        await canvas.click({ position: { x: box.width / 2, y: box.height / 3 } });
        say('clicked', { key: arg });
      } else if (command === 'await-close') {
        const handle = await page.waitForFunction(() => window.pair?.closed, null, { timeout: opts.timeoutMs });
        say('closed', { ...(await handle.jsonValue()), pageErrors: pageErrors.length });
      } else if (command === 'exit') {
        break;
      } else if (command !== '') {
        throw new Error(`unknown command ${line}`);
      }
    }
    say('bye', { pageErrors: pageErrors.length });
  } finally {
    await context?.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stdout.write(`@error ${JSON.stringify(String(e?.message ?? e))}\n`);
    process.exit(1);
  },
);
