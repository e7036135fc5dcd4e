/**
 * The desktop page of the desktop ↔ gateway pair. It connects to the
 * gateway daemon over the browser's WebSocket, calls `gateway.Gateway`
 * (status, configuration, drive buttons, a chat, live telemetry), offers
 * `chart.Chart` (the gateway draws on the page's charts) and sends
 * `chart.ChartEvents` (clicks on a chart).
 *
 * Opened with `?auto` (as the demo does), it also runs a short script
 * through the same code paths as the buttons and reports `window.pairDone`;
 * `?credit=KiB` sets its receive window (see `receiveWindow`).
 *
 * @module
 */

import {
  connect,
  type Connection,
  ErrorCode,
  errorCodeLabel,
  type Limits,
  RemoteError,
  Router,
  RpcError,
} from 'gatewire';

import { ChartEventsClient, ChartEventsService, ChartService } from '../../schemas/ts/chart_gatewire.js';
import { ClickedT } from '../../schemas/ts/chart/clicked.js';
import { ChatMessageT, type ChatMessage } from '../../schemas/ts/gateway/chat-message.js';
import { ConfigT, type Config } from '../../schemas/ts/gateway/config.js';
import { Dir } from '../../schemas/ts/gateway/dir.js';
import { DirectionT } from '../../schemas/ts/gateway/direction.js';
import { EmptyT } from '../../schemas/ts/gateway/empty.js';
import { Health } from '../../schemas/ts/gateway/health.js';
import type { Sample } from '../../schemas/ts/gateway/sample.js';
import { SettingT } from '../../schemas/ts/gateway/setting.js';
import { TelemetryRequestT } from '../../schemas/ts/gateway/telemetry-request.js';
import { GatewayClient, GatewayService } from '../../schemas/ts/gateway_gatewire.js';

import { Charts, type ChartSummary } from './charts.js';

/** Milliseconds allowed for each call; the deadline travels to the gateway. */
const CALL_MS = 5_000;
/** Milliseconds the automatic script waits for a reply or a sample. */
const WAIT_MS = 10_000;
/** Milliseconds between telemetry samples. */
const TELEMETRY_MS = 100;
/** Lines kept in the chat and in the page's log. */
const MAX_LINES = 200;
/** Temperatures kept for the telemetry sparkline. */
const MAX_SAMPLES = 300;

/** What the automatic script reports. */
interface Summary {
  gateway: string | undefined;
  connectMs: number;
  status: { name: string; clients: number };
  config: Record<string, string>;
  refusedCode: string | undefined;
  drives: number;
  chatReplies: string[];
  samples: number;
  position: { x: number; y: number };
}

/** How the connection ended. */
interface Closed {
  graceful: boolean;
  reason: string | undefined;
  chatEnded: boolean;
  telemetryEnded: boolean;
}

/** What the page exposes to a driver (the demo's headless Chromium). */
interface PairApi {
  charts(): ChartSummary[];
  closed: Closed | undefined;
}

declare global {
  interface Window {
    pair?: PairApi;
    pairDone?: Summary;
    pairFailed?: string;
  }
}

// ----- the page ---------------------------------------------------------------------------

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) {
    throw new Error(`the page has no #${id}`);
  }
  return found as T;
}

/** Appends a line to a bounded list. */
function append(list: HTMLElement, text: string, className?: string): void {
  const item = document.createElement('li');
  item.textContent = text;
  if (className !== undefined) {
    item.className = className;
  }
  list.append(item);
  while (list.childElementCount > MAX_LINES) {
    list.firstElementChild?.remove();
  }
  list.scrollTop = list.scrollHeight;
}

/** Logs to the console (the demo relays it) and to the page. */
function log(text: string): void {
  console.log(text);
  append(el('log'), text);
}

function describe(e: unknown): string {
  if (e instanceof RemoteError) {
    return `${errorCodeLabel(e.wireCode)}: ${e.detail ?? ''}`;
  }
  return e instanceof Error ? e.message : String(e);
}

/** Resolves with `value()` once `ready()` holds, re-checked by `poke`; rejects after `ms`. */
class Condition {
  readonly #waiters = new Set<() => void>();

  poke(): void {
    for (const w of [...this.#waiters]) {
      w();
    }
  }

  until(ready: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
    if (ready()) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (ready()) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no ${what} within ${ms} ms`));
      }, ms);
      this.#waiters.add(check);
    });
  }
}

// ----- the gateway's services -------------------------------------------------------------

const HEALTH: Record<number, string> = { [Health.Ok]: 'ok', [Health.Degraded]: 'degraded', [Health.Failed]: 'failed' };
const DIRS: Record<string, Dir> = {
  stop: Dir.Stop,
  left: Dir.Left,
  right: Dir.Right,
  forward: Dir.Forward,
  back: Dir.Back,
};

function settings(config: Config): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < config.settingsLength(); i++) {
    const s = config.settings(i);
    if (s !== null) {
      out[s.key() ?? ''] = s.value() ?? '';
    }
  }
  return out;
}

class Desktop {
  readonly gateway: GatewayClient;
  readonly changed = new Condition();
  readonly chatReplies: string[] = [];
  readonly temperatures: number[] = [];
  samples = 0;
  position = { x: 0, y: 0 };
  drives = 0;
  chatEnded = false;
  telemetryEnded = false;
  #chat: Promise<(text: string) => Promise<void>> | undefined;
  /** Settles once the chat has ended (or at once if it never opened). */
  chatDone: Promise<void> = Promise.resolve();

  constructor(readonly conn: Connection) {
    this.gateway = new GatewayClient(conn);
  }

  async status(): Promise<{ name: string; clients: number }> {
    const s = await this.gateway.getStatus(new EmptyT(), { timeoutMs: CALL_MS });
    const name = s.name() ?? '';
    el('status-name').textContent = name;
    el('status-uptime').textContent = `${s.uptimeS()} s`;
    el('status-health').textContent = HEALTH[s.health()] ?? `unknown (${s.health()})`;
    el('status-clients').textContent = String(s.clients());
    return { name, clients: s.clients() };
  }

  #showConfig(config: Config): Record<string, string> {
    const values = settings(config);
    const table = el('config-table');
    table.replaceChildren();
    for (const [k, v] of Object.entries(values)) {
      const row = document.createElement('tr');
      const key = document.createElement('th');
      const value = document.createElement('td');
      key.textContent = k;
      value.textContent = v;
      row.append(key, value);
      table.append(row);
    }
    return values;
  }

  async config(): Promise<Record<string, string>> {
    return this.#showConfig(await this.gateway.getConfig(new EmptyT(), { timeoutMs: CALL_MS }));
  }

  /** Applies one setting; a refusal is shown and rethrown. */
  async set(key: string, value: string): Promise<Record<string, string>> {
    const error = el('config-error');
    error.textContent = '';
    try {
      const config = await this.gateway.setConfig(new ConfigT([new SettingT(key, value)]), { timeoutMs: CALL_MS });
      log(`SetConfig ${key}=${value}: applied`);
      return this.#showConfig(config);
    } catch (e) {
      error.textContent = `refused: ${describe(e)}`;
      throw e;
    }
  }

  async drive(dir: string, speed: number): Promise<void> {
    const d = DIRS[dir];
    if (d === undefined) {
      throw new Error(`no direction ${dir}`);
    }
    await this.gateway.drive(new DirectionT(d, speed));
    this.drives += 1;
    el('drive-last').textContent = `${dir} at ${speed} m/s`;
    log(`Drive ${dir} at ${speed} m/s (one-way event)`);
  }

  /** Opens the chat (once) and sends `text`; replies arrive in order. */
  async say(text: string): Promise<void> {
    this.#chat ??= this.#openChat();
    const send = await this.#chat;
    await send(text);
  }

  async #openChat(): Promise<(text: string) => Promise<void>> {
    const [sink, source] = await this.gateway.chat();
    const list = el('chat-log');
    this.chatDone = (async () => {
      try {
        for await (const m of source) {
          this.#onReply(list, m);
        }
        this.chatEnded = true;
        log('Chat: the gateway ended the chat');
        await sink.finish();
      } catch (e) {
        log(`Chat failed: ${describe(e)}`);
      } finally {
        this.changed.poke();
      }
    })();
    return async (text) => {
      await sink.send(new ChatMessageT('desktop', text, BigInt(Date.now())));
      append(list, `you: ${text}`, 'me');
    };
  }

  #onReply(list: HTMLElement, m: ChatMessage): void {
    const text = m.text() ?? '';
    this.chatReplies.push(text);
    if (this.chatReplies.length > MAX_LINES) {
      this.chatReplies.shift();
    }
    append(list, `${m.from() ?? '?'}: ${text}`, 'them');
    log(`Chat reply: ${text}`);
    this.changed.poke();
  }

  /** Receives samples until the gateway ends the stream; credit is granted as they are read. */
  async telemetry(): Promise<void> {
    const source = await this.gateway.telemetry(new TelemetryRequestT(TELEMETRY_MS, 0));
    log(`Telemetry: a sample every ${TELEMETRY_MS} ms`);
    try {
      for await (const sample of source) {
        this.#onSample(sample);
      }
      this.telemetryEnded = true;
      log(`Telemetry: the gateway ended the stream after ${this.samples} samples`);
    } finally {
      this.changed.poke();
    }
  }

  #onSample(s: Sample): void {
    this.samples += 1;
    const p = s.position();
    this.position = { x: p?.x() ?? 0, y: p?.y() ?? 0 };
    const t = s.temperatureC();
    this.temperatures.push(t);
    if (this.temperatures.length > MAX_SAMPLES) {
      this.temperatures.shift();
    }
    el('tm-seq').textContent = String(s.seq());
    el('tm-temp').textContent = `${t.toFixed(2)} °C`;
    el('tm-pos').textContent = `(${this.position.x.toFixed(2)}, ${this.position.y.toFixed(2)}) m`;
    sparkline(el<HTMLCanvasElement>('tm-spark'), this.temperatures);
    this.changed.poke();
  }
}

function sparkline(canvas: HTMLCanvasElement, values: number[]): void {
  const g = canvas.getContext('2d');
  if (g === null || values.length < 2) {
    return;
  }
  const w = canvas.width;
  const h = canvas.height;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = '#c05621';
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / (MAX_SAMPLES - 1)) * (w - 1);
    const y = h - 2 - ((v - lo) / span) * (h - 4);
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.stroke();
}

// ----- the automatic script ---------------------------------------------------------------

async function script(desktop: Desktop, gateway: string | undefined, connectMs: number): Promise<Summary> {
  await desktop.set('mode', 'sport');
  let refusedCode: string | undefined;
  try {
    await desktop.set('max_speed', '99');
  } catch (e) {
    if (!(e instanceof RemoteError) || e.wireCode !== ErrorCode.INVALID_ARGUMENT) {
      throw e;
    }
    refusedCode = errorCodeLabel(e.wireCode);
    log(`SetConfig max_speed=99: refused as expected (${describe(e)})`);
  }
  const config = await desktop.config();

  await desktop.drive('left', 1);
  await desktop.drive('forward', 1.5);
  const questions = ['hello gateway', 'where are you?', 'which mode?'];
  const before = desktop.chatReplies.length;
  for (const q of questions) {
    await desktop.say(q);
  }
  await desktop.changed.until(() => desktop.chatReplies.length >= before + questions.length, 'chat replies');
  const samplesBefore = desktop.samples;
  await desktop.changed.until(() => desktop.samples >= samplesBefore + 5, 'telemetry samples');
  await desktop.drive('stop', 0);
  const status = await desktop.status();
  return {
    gateway,
    connectMs,
    status,
    config,
    refusedCode,
    drives: desktop.drives,
    chatReplies: desktop.chatReplies.slice(before),
    samples: desktop.samples,
    position: desktop.position,
  };
}

// ----- start ------------------------------------------------------------------------------

/** The page's stream credit in KiB, unless `?credit=` sets another. */
const PAGE_CREDIT_KIB = 256;

/**
 * The receive window: each stream's credit, 256 KiB unless `?credit=KiB`
 * sets it (the protocol's default is 1 MiB). Whatever a window lets the
 * gateway send ahead sits in the socket buffers in front of the next small
 * call (the gateway's core already lets it overtake its own queue), so the
 * probes behind a bulk transfer wait about window / consumption rate. This
 * page consumes a few tens of MB/s, so it keeps a quarter of the default; a
 * larger window speeds the transfer up only when the path, not this page,
 * is slow.
 */
function receiveWindow(params: URLSearchParams): Partial<Limits> {
  const asked = Number(params.get('credit') ?? PAGE_CREDIT_KIB);
  const kib = Number.isInteger(asked) && asked >= 1 && asked <= 1 << 20 ? asked : PAGE_CREDIT_KIB;
  const credit = kib * 1024;
  return { initialStreamCredit: credit, connectionCredit: Math.max(4 << 20, 2 * credit) };
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const auto = params.has('auto');
  const state = el('conn');
  const response = await fetch('/gw.json', { cache: 'no-store' });
  const { ws } = (await response.json()) as { ws?: unknown };
  if (typeof ws !== 'string' || !ws.startsWith('ws://')) {
    throw new Error('/gw.json names no ws:// URL');
  }

  let events: ChartEventsClient | undefined;
  const charts = new Charts(
    el('charts'),
    (chart, x, y) => {
      log(`Clicked chart #${chart} at x=${x.toFixed(3)}, y=${y.toFixed(3)}: telling the gateway`);
      events?.clicked(new ClickedT(chart, x, y)).catch((e: unknown) => log(`Clicked failed: ${describe(e)}`));
    },
    log,
  );
  const api: PairApi = { charts: () => charts.summary(), closed: undefined };
  window.pair = api;

  state.textContent = `connecting to ${ws}`;
  const start = performance.now();
  const conn = await connect(ws, {
    router: ChartService.route(new Router(), charts),
    offers: [ChartService.descriptor()],
    uses: [GatewayService.descriptor(), ChartEventsService.descriptor()],
    limits: receiveWindow(params),
  });
  const connectMs = Math.round((performance.now() - start) * 10) / 10;
  events = new ChartEventsClient(conn);
  const agent = conn.peer?.agent;
  state.textContent = `connected to ${ws}`;
  state.className = 'up';
  log(`Connected to ${ws} in ${connectMs} ms (gateway ${agent ?? '?'})`);

  const desktop = new Desktop(conn);
  let telemetry: Promise<void> = Promise.resolve();
  void conn.closed.then(async (error) => {
    // The streams end with the connection: report once they have.
    await Promise.allSettled([telemetry, desktop.chatDone]);
    const closed: Closed = {
      graceful: error === undefined,
      reason: error === undefined ? undefined : describe(error),
      chatEnded: desktop.chatEnded,
      telemetryEnded: desktop.telemetryEnded,
    };
    api.closed = closed;
    state.textContent = closed.graceful
      ? 'the gateway closed the connection gracefully'
      : `disconnected: ${closed.reason}`;
    state.className = 'down';
    log(closed.graceful ? 'Connection closed gracefully' : `Connection lost: ${closed.reason}`);
  });

  const status = await desktop.status();
  log(`GetStatus: ${status.name}, ${status.clients} client(s)`);
  log(`GetConfig: ${JSON.stringify(await desktop.config())}`);
  telemetry = desktop.telemetry().catch((e: unknown) => log(`Telemetry failed: ${describe(e)}`));
  wire(desktop);

  if (auto) {
    const summary = await script(desktop, agent, connectMs);
    window.pairDone = summary;
    log(
      `done: config refused with ${summary.refusedCode ?? 'nothing'}, ${summary.drives} drive events,` +
        ` ${summary.chatReplies.length} chat replies, ${summary.samples} telemetry samples`,
    );
  }
}

/** Connects the buttons and forms to the desktop. */
function wire(desktop: Desktop): void {
  const speed = el<HTMLInputElement>('drive-speed');
  for (const button of document.querySelectorAll<HTMLButtonElement>('button[data-dir]')) {
    button.addEventListener('click', () => {
      desktop.drive(button.dataset['dir'] ?? 'stop', Number(speed.value)).catch((e: unknown) => log(describe(e)));
    });
  }
  el('status-refresh').addEventListener('click', () => {
    desktop.status().catch((e: unknown) => log(describe(e)));
  });
  el<HTMLFormElement>('config-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = el<HTMLInputElement>('config-key').value.trim();
    const value = el<HTMLInputElement>('config-value').value.trim();
    desktop.set(key, value).catch((err: unknown) => log(`SetConfig refused: ${describe(err)}`));
  });
  el<HTMLFormElement>('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = el<HTMLInputElement>('chat-input');
    const text = input.value.trim();
    if (text !== '') {
      input.value = '';
      desktop.say(text).catch((err: unknown) => log(`Chat failed: ${describe(err)}`));
    }
  });
}

main().catch((e: unknown) => {
  const message = e instanceof RpcError || e instanceof Error ? describe(e) : String(e);
  window.pairFailed = message;
  const state = document.getElementById('conn');
  if (state !== null) {
    state.textContent = `failed: ${message}`;
    state.className = 'down';
  }
  console.error(`page failed: ${message}`);
});
