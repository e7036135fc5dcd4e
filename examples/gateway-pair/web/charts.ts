/**
 * The page's side of `chart.Chart`: charts kept in memory by key and drawn
 * on a `<canvas>` each. The gateway calls these handlers; points arrive as
 * `Float64Array` views of the received messages and are copied once into
 * each chart's own arrays.
 *
 * Creating a chart with a key that exists returns the existing chart, so a
 * gateway that re-sends its charts after a page refresh, or retries a
 * `Create`, never duplicates one.
 *
 * @module
 */

import { codegen as gc, Status } from 'gatewire';

import type { ChartHandler } from '../../schemas/ts/chart_gatewire.js';
import { AddedT } from '../../schemas/ts/chart/added.js';
import { ChartRefT, type ChartRef } from '../../schemas/ts/chart/chart-ref.js';
import type { CreateChart } from '../../schemas/ts/chart/create-chart.js';
import { EmptyT } from '../../schemas/ts/chart/empty.js';
import { PointsT, type Points } from '../../schemas/ts/chart/points.js';
import type { Probe } from '../../schemas/ts/chart/probe.js';
import { ProbeReplyT } from '../../schemas/ts/chart/probe-reply.js';
import type { SetTitle } from '../../schemas/ts/chart/set-title.js';
import { TitleT } from '../../schemas/ts/chart/title.js';

/** Charts a page holds at most. */
export const MAX_CHARTS = 16;
/** Points a chart holds at most (16 bytes each). */
export const MAX_POINTS = 4_000_000;
/** Characters of a key or a title. */
const MAX_TEXT = 200;
/** Milliseconds between redraws of a chart. */
const REDRAW_MS = 250;
/** Points per `Snapshot` item. */
const SNAPSHOT_BATCH = 50_000;
/** Application error: no chart has this id. */
export const NO_CHART = 0x8001;
/** Application error: the page holds no more charts, or the chart no more points. */
export const FULL = 0x8002;

/** What a chart holds, for the page's report. */
export interface ChartSummary {
  id: number;
  key: string;
  title: string;
  points: number;
  canvases: number;
}

/** One series of points in two growing arrays. */
class Series {
  #xs = new Float64Array(1024);
  #ys = new Float64Array(1024);
  length = 0;
  minX = Infinity;
  maxX = -Infinity;
  minY = Infinity;
  maxY = -Infinity;

  /** Appends a batch (copied: the views belong to the received message). */
  append(xs: Float64Array, ys: Float64Array): void {
    if (xs.length !== ys.length) {
      throw Status.invalidArgument(`xs and ys differ in length (${xs.length} and ${ys.length})`);
    }
    const need = this.length + xs.length;
    if (need > MAX_POINTS) {
      throw new Status(FULL, `a chart holds at most ${MAX_POINTS} points`);
    }
    if (need > this.#xs.length) {
      const size = Math.min(Math.max(need, this.#xs.length * 2), MAX_POINTS);
      const grownX = new Float64Array(size);
      const grownY = new Float64Array(size);
      grownX.set(this.xs);
      grownY.set(this.ys);
      this.#xs = grownX;
      this.#ys = grownY;
    }
    this.#xs.set(xs, this.length);
    this.#ys.set(ys, this.length);
    this.length = need;
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i] as number;
      const y = ys[i] as number;
      if (x < this.minX) this.minX = x;
      if (x > this.maxX) this.maxX = x;
      if (y < this.minY) this.minY = y;
      if (y > this.maxY) this.maxY = y;
    }
  }

  get xs(): Float64Array {
    return this.#xs.subarray(0, this.length);
  }

  get ys(): Float64Array {
    return this.#ys.subarray(0, this.length);
  }
}

/** A chart on the page: a caption and a canvas. */
class ChartView {
  readonly series = new Series();
  readonly element: HTMLElement;
  readonly #caption: HTMLElement;
  readonly #canvas: HTMLCanvasElement;
  #title: string;
  #frame: number | undefined;
  #drawn = -Infinity;

  constructor(
    readonly id: number,
    readonly key: string,
    title: string,
    container: HTMLElement,
    onClick: (chart: number, x: number, y: number) => void,
  ) {
    this.#title = title;
    this.element = document.createElement('figure');
    this.element.className = 'chart';
    this.element.dataset['key'] = key;
    this.#caption = document.createElement('figcaption');
    this.#canvas = document.createElement('canvas');
    this.#canvas.title = 'click: the page tells the gateway (chart.ChartEvents/Clicked)';
    this.#canvas.addEventListener('click', (e) => {
      const p = this.#dataAt(e.offsetX, e.offsetY);
      if (p !== undefined) {
        onClick(this.id, p.x, p.y);
      }
    });
    this.element.append(this.#caption, this.#canvas);
    container.append(this.element);
    this.invalidate();
  }

  get title(): string {
    return this.#title;
  }

  set title(title: string) {
    this.#title = title;
    this.invalidate();
  }

  /**
   * Redraws soon: at the next frame, and at most every {@link REDRAW_MS}
   * however often it is called (a redraw reads every point, and points may
   * be arriving by the million).
   */
  invalidate(): void {
    if (this.#frame !== undefined) {
      return;
    }
    const wait = Math.max(0, this.#drawn + REDRAW_MS - performance.now());
    this.#frame = window.setTimeout(() => {
      requestAnimationFrame(() => {
        this.#frame = undefined;
        this.#drawn = performance.now();
        this.#draw();
      });
    }, wait);
  }

  #dataAt(px: number, py: number): { x: number; y: number } | undefined {
    const s = this.series;
    const w = this.#canvas.clientWidth;
    const h = this.#canvas.clientHeight;
    if (s.length === 0 || w === 0 || h === 0) {
      return undefined;
    }
    return {
      x: s.minX + (px / w) * (s.maxX - s.minX),
      y: s.maxY - (py / h) * (s.maxY - s.minY),
    };
  }

  #draw(): void {
    const s = this.series;
    this.#caption.textContent = `${this.#title || this.key} — ${s.length.toLocaleString('en-US')} points`;
    const canvas = this.#canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.floor(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.floor(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const g = canvas.getContext('2d');
    if (g === null) {
      return;
    }
    g.clearRect(0, 0, w, h);
    if (s.length === 0) {
      return;
    }
    const spanX = s.maxX - s.minX || 1;
    const spanY = s.maxY - s.minY || 1;
    const px = (x: number): number => ((x - s.minX) / spanX) * (w - 1);
    const py = (y: number): number => h - 1 - ((y - s.minY) / spanY) * (h - 1);
    const xs = s.xs;
    const ys = s.ys;
    g.strokeStyle = '#2b6cb0';
    g.lineWidth = Math.max(1, dpr);
    g.beginPath();
    if (xs.length <= w) {
      // Few points: a line through each.
      for (let i = 0; i < xs.length; i++) {
        const x = px(xs[i] as number);
        const y = py(ys[i] as number);
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      }
    } else {
      // Min and max of each pixel column: a million points become 2 * width
      // line ends, and the shape of the data stays exact at this resolution.
      const lo = new Float64Array(w).fill(Infinity);
      const hi = new Float64Array(w).fill(-Infinity);
      for (let i = 0; i < xs.length; i++) {
        const col = Math.round(px(xs[i] as number));
        const y = ys[i] as number;
        if (y < (lo[col] as number)) lo[col] = y;
        if (y > (hi[col] as number)) hi[col] = y;
      }
      for (let col = 0; col < w; col++) {
        const a = lo[col] as number;
        if (a === Infinity) continue;
        g.lineTo(col + 0.5, py(a));
        g.lineTo(col + 0.5, py(hi[col] as number) + 0.5);
      }
    }
    g.stroke();
    g.fillStyle = '#718096';
    g.font = `${11 * dpr}px system-ui, sans-serif`;
    g.fillText(s.maxY.toPrecision(4), 4 * dpr, 12 * dpr);
    g.fillText(s.minY.toPrecision(4), 4 * dpr, h - 4 * dpr);
    g.stroke();
  }
}

/** The charts of the page: the `chart.Chart` handlers the gateway calls. */
export class Charts implements ChartHandler {
  readonly #byKey = new Map<string, ChartView>();
  readonly #byId: ChartView[] = [];

  constructor(
    readonly container: HTMLElement,
    readonly onClick: (chart: number, x: number, y: number) => void,
    readonly log: (line: string) => void,
  ) {}

  #chart(id: number): ChartView {
    const chart = this.#byId[id];
    if (chart === undefined) {
      throw new Status(NO_CHART, `no chart ${id}`);
    }
    return chart;
  }

  #add(points: Points): ChartView {
    const chart = this.#chart(points.chart());
    const xs = points.xsArray() ?? new Float64Array(0);
    const ys = points.ysArray() ?? new Float64Array(0);
    chart.series.append(xs, ys);
    chart.invalidate();
    return chart;
  }

  /** What each chart holds (and how many canvases show it). */
  summary(): ChartSummary[] {
    return this.#byId.map((c) => ({
      id: c.id,
      key: c.key,
      title: c.title,
      points: c.series.length,
      canvases: this.container.querySelectorAll(`figure.chart[data-key="${CSS.escape(c.key)}"] canvas`).length,
    }));
  }

  create(_ctx: gc.CallContext, request: CreateChart): ChartRefT {
    const key = request.key() ?? '';
    if (key === '' || key.length > MAX_TEXT) {
      throw Status.invalidArgument(`a chart key holds 1 to ${MAX_TEXT} characters`);
    }
    const existing = this.#byKey.get(key);
    if (existing !== undefined) {
      this.log(`Create '${key}': the chart exists (#${existing.id}), no duplicate`);
      return new ChartRefT(existing.id);
    }
    if (this.#byId.length >= MAX_CHARTS) {
      throw new Status(FULL, `a page holds at most ${MAX_CHARTS} charts`);
    }
    const chart = new ChartView(this.#byId.length, key, request.title() ?? '', this.container, this.onClick);
    this.#byId.push(chart);
    this.#byKey.set(key, chart);
    this.log(`Create '${key}': new chart #${chart.id}`);
    return new ChartRefT(chart.id);
  }

  setTitle(_ctx: gc.CallContext, request: SetTitle): EmptyT {
    const title = request.title() ?? '';
    if (title.length > MAX_TEXT) {
      throw Status.invalidArgument(`a title holds at most ${MAX_TEXT} characters`);
    }
    this.#chart(request.chart()).title = title;
    return new EmptyT();
  }

  getTitle(_ctx: gc.CallContext, request: ChartRef): TitleT {
    return new TitleT(this.#chart(request.id()).title);
  }

  addPoints(_ctx: gc.CallContext, request: Points): AddedT {
    const chart = this.#add(request);
    this.log(`AddPoints: chart '${chart.key}' holds ${chart.series.length.toLocaleString('en-US')} points`);
    return new AddedT(BigInt(chart.series.length));
  }

  async streamPoints(_ctx: gc.CallContext, items: gc.Source<Points>): Promise<AddedT> {
    const start = performance.now();
    let chart: ChartView | undefined;
    let batches = 0;
    let received = 0;
    for await (const points of items) {
      chart = this.#add(points);
      batches += 1;
      received += points.xsLength();
    }
    const ms = (performance.now() - start).toFixed(1);
    const where = chart === undefined ? 'no chart' : `chart '${chart.key}'`;
    this.log(
      `StreamPoints: ${received.toLocaleString('en-US')} points in ${batches} batches in ${ms} ms` +
        ` (Float64Array views, copied once), ${where} holds ${(chart?.series.length ?? 0).toLocaleString('en-US')}`,
    );
    return new AddedT(BigInt(chart?.series.length ?? 0));
  }

  async snapshot(_ctx: gc.CallContext, request: ChartRef, items: gc.Sink<PointsT>): Promise<void> {
    const chart = this.#chart(request.id());
    const { xs, ys } = chart.series;
    for (let i = 0; i < xs.length; i += SNAPSHOT_BATCH) {
      const batch = new PointsT(
        chart.id,
        Array.from(xs.subarray(i, i + SNAPSHOT_BATCH)),
        Array.from(ys.subarray(i, i + SNAPSHOT_BATCH)),
      );
      await items.send(batch);
    }
  }

  probe(_ctx: gc.CallContext, request: Probe): ProbeReplyT {
    return new ProbeReplyT(request.sentNs(), performance.now());
  }
}
