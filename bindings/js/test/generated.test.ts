/**
 * Generated TypeScript (`examples/schemas/ts`, written by `gatewire gen
 * --lang ts`).
 *
 * The generated modules live outside this package's TypeScript program (its
 * `rootDir` is the package), so this file compiles them as a second program,
 * with `test/generated.scenario.mts` (the tests proper, typed against the
 * generated API), under the package's strict options into
 * `build-test/generated/`, then runs the scenario. At run time the generated
 * code imports `gatewire` by the package's own name (the built `dist/`) and
 * `flatbuffers` from its `node_modules`.
 */

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';

import ts from 'typescript';

import { packageRoot, repoRoot } from './interop.js';

const pkg = packageRoot();
const root = repoRoot();
const out = join(pkg, 'build-test', 'generated');
const generated = join(root, 'examples', 'schemas', 'ts');
const scenario = join(pkg, 'test', 'generated.scenario.mts');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The package's `tsconfig.json` options, with module resolution for files outside the package. */
const options: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2022.d.ts'],
  types: ['node'],
  typeRoots: [join(pkg, 'node_modules', '@types')],
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  strict: true,
  noUncheckedIndexedAccess: true,
  noImplicitOverride: true,
  noImplicitReturns: true,
  noFallthroughCasesInSwitch: true,
  noUnusedLocals: true,
  noUnusedParameters: true,
  verbatimModuleSyntax: true,
  isolatedModules: true,
  forceConsistentCasingInFileNames: true,
  skipLibCheck: false,
  rootDir: root,
  outDir: out,
  paths: {
    gatewire: [join(pkg, 'dist', 'index.d.ts')],
    'gatewire/node': [join(pkg, 'dist', 'node', 'index.d.ts')],
    flatbuffers: [join(pkg, 'node_modules', 'flatbuffers', 'js', 'flatbuffers.d.ts')],
  },
};

const program = ts.createProgram([...tsFiles(generated), scenario], options);
const emitted = program.emit();
const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
const report = ts.formatDiagnostics(diagnostics, {
  getCanonicalFileName: (f) => f,
  getCurrentDirectory: () => root,
  getNewLine: () => '\n',
});

describe('generated TypeScript', () => {
  it('compiles with the package strict options (tsc --strict and more)', () => {
    assert.equal(report, '');
    assert.ok(tsFiles(generated).length > 0);
  });
});

if (diagnostics.length === 0) {
  await import(pathToFileURL(join(out, 'bindings', 'js', 'test', 'generated.scenario.mjs')).href);
}
