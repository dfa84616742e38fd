/**
 * Charts of a run, drawn with Vega-Lite (compiled by `vega-lite`, rendered to SVG by `vega`'s
 * headless view) and rasterized to PNG by `@resvg/resvg-js`: training curves from the metrics
 * file, and a 2-D map of embeddings colored by class. Everything runs offline.
 */
import { writeFile } from 'node:fs/promises';
import type { EpochRecord, ResultRecord } from './metrics';

/** A Vega-Lite specification (plain JSON). */
export type VegaLiteSpec = Record<string, unknown>;

// vega and vega-lite are ES modules with top-level await, which a CommonJS build cannot
// require(). TypeScript's CommonJS output turns import() into require(), so the native import()
// is reached through a Function; inside a vm context without an import callback (vitest's module
// runner), that fails and the plain import() (which the runner handles) is used instead.
const nativeImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

async function importEsm(specifier: string): Promise<unknown> {
  try {
    return await nativeImport(specifier);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING') throw e;
    return import(specifier);
  }
}

interface VegaLiteModule {
  compile(spec: VegaLiteSpec): { spec: object };
}
interface VegaModule {
  parse(spec: object): unknown;
  View: new (runtime: unknown, options: { renderer: 'none' }) => { toSVG(): Promise<string>; finalize(): void };
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const FONT = 'DejaVu Sans, Arial, sans-serif';

/**
 * Training curves: mean loss, kNN accuracy and learning rate per epoch, side by side with
 * independent y scales. The title states the final result when there is one.
 */
export function curvesSpec(epochs: readonly EpochRecord[], result?: ResultRecord, title = 'Training curves'): VegaLiteSpec {
  const rows: Array<{ epoch: number; metric: string; value: number }> = [];
  for (const r of epochs) {
    rows.push({ epoch: r.epoch, metric: 'loss', value: r.loss });
    if (r.knnAccuracy !== undefined) rows.push({ epoch: r.epoch, metric: 'kNN accuracy', value: r.knnAccuracy });
    rows.push({ epoch: r.epoch, metric: 'learning rate', value: r.lr });
  }
  const subtitle = result
    ? `test accuracy ${(100 * result.testAccuracy).toFixed(2)}% (${result.evaluation === 'linear' ? 'linear evaluation' : 'classifier head'}, ${result.testCount} images)`
    : `${epochs.length} epoch(s)`;
  return {
    $schema: SCHEMA,
    title: { text: title, subtitle },
    data: { values: rows },
    facet: { column: { field: 'metric', type: 'nominal', title: null, sort: ['loss', 'kNN accuracy', 'learning rate'] } },
    spec: {
      width: 240,
      height: 180,
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'epoch', type: 'quantitative', axis: { tickMinStep: 1, format: 'd' } },
        y: { field: 'value', type: 'quantitative', scale: { zero: false }, title: null },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: { background: 'white', font: FONT },
  };
}

/** A scatter plot of 2-D points colored by class name. */
export function embeddingMapSpec(
  points: ArrayLike<number>,
  labels: ArrayLike<number>,
  classNames: readonly string[],
  title = 'UMAP of the embeddings',
): VegaLiteSpec {
  const values: Array<{ x: number; y: number; class: string }> = [];
  for (let i = 0; i < labels.length; i++) {
    values.push({ x: points[2 * i], y: points[2 * i + 1], class: classNames[labels[i]] ?? String(labels[i]) });
  }
  return {
    $schema: SCHEMA,
    title,
    width: 520,
    height: 440,
    data: { values },
    mark: { type: 'circle', size: 14, opacity: 0.75 },
    encoding: {
      x: { field: 'x', type: 'quantitative', axis: null, scale: { zero: false } },
      y: { field: 'y', type: 'quantitative', axis: null, scale: { zero: false } },
      color: { field: 'class', type: 'nominal', sort: [...classNames], scale: { scheme: 'tableau10' }, legend: { title: 'class' } },
    },
    config: { background: 'white', font: FONT, view: { stroke: null } },
  };
}

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const vegaLite = (await importEsm('vega-lite')) as VegaLiteModule;
  const vega = (await importEsm('vega')) as VegaModule;
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterizes an SVG to PNG at `scale` x its size, on white, with the system's fonts. */
export function svgToPng(svg: string, scale = 2): Buffer {
  // Loaded on first use: the renderer is a native module the rest of the package does not need.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Resvg } = require('@resvg/resvg-js') as typeof import('@resvg/resvg-js');
  const resvg = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: scale },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
  });
  return resvg.render().asPng();
}

/** Renders `spec` and writes `<basePath>.svg` and `<basePath>.png`; returns the two paths. */
export async function writeChart(spec: VegaLiteSpec, basePath: string): Promise<[string, string]> {
  const svg = await renderSvg(spec);
  const svgPath = `${basePath}.svg`;
  const pngPath = `${basePath}.png`;
  await writeFile(svgPath, svg);
  await writeFile(pngPath, svgToPng(svg));
  return [svgPath, pngPath];
}
