import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

/**
 * docs/architecture.md promises layers whose imports only point down, and no import circles.
 * These tests read every import of src/ and hold the code to that picture.
 */

const src = path.resolve(__dirname, '../src');

/** Each layer, from the top down; a file may import its own layer and the ones after it. */
const LAYERS = [
  ['cli', 'demo'],
  ['client', 'worker'],
  ['workflows'],
  ['activities'],
  ['connectors', 'tenancy', 'observability'],
  ['temporal'],
  ['core'],
  ['db', 'paths.ts', 'logging.ts'],
] as const;

function layerOf(file: string): number {
  const top = path.relative(src, file).split(path.sep)[0]!;
  const index = LAYERS.findIndex((names) => (names as readonly string[]).includes(top));
  assert.ok(index >= 0, `src/${top} is in no layer of docs/architecture.md`);
  return index;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** The src files `file` imports (static imports, re-exports, import() and require() of a literal path). */
function importsOf(file: string): string[] {
  const code = fs.readFileSync(file, 'utf8');
  const specifiers = [
    ...code.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/g),
    ...code.matchAll(/\b(?:import|require)\(\s*'([^']+)'\s*\)/g),
  ].map((m) => m[1]!);
  return specifiers
    .filter((s) => s.startsWith('.'))
    .map((s) => resolveSource(path.resolve(path.dirname(file), s.replace(/\.js$/, ''))))
    .filter((target): target is string => target !== undefined && target.startsWith(src + path.sep));
}

function resolveSource(base: string): string | undefined {
  return [`${base}.ts`, path.join(base, 'index.ts')].find((candidate) => fs.existsSync(candidate));
}

const graph = new Map(sourceFiles(src).map((file) => [file, importsOf(file)]));
const rel = (file: string) => path.relative(path.dirname(src), file);

test('every import points to the same layer or one below it (core imports nothing above it)', () => {
  const upward = [...graph].flatMap(([file, targets]) =>
    targets
      .filter((target) => layerOf(target) < layerOf(file))
      .map((target) => `${rel(file)} -> ${rel(target)}`),
  );
  assert.deepEqual(upward, []);
});

test('no import circles', () => {
  // Tarjan's strongly connected components: a component of more than one file is a circle.
  let index = 0;
  const order = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  const visit = (file: string) => {
    order.set(file, index);
    low.set(file, index++);
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!order.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file)!, order.get(target)!));
      }
    }
    if (low.get(file) === order.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(rel(member));
      } while (member !== file);
      if (component.length > 1) circles.push(component.sort());
    }
  };
  for (const file of graph.keys()) if (!order.has(file)) visit(file);
  assert.deepEqual(circles, []);
});

test('the import reader sees imports (a check of this test itself)', () => {
  const activities = graph.get(path.join(src, 'activities/refresh.ts')) ?? [];
  assert.ok(activities.some((target) => target.includes(`${path.sep}core${path.sep}`)));
});
