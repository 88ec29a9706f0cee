/**
 * Readers of the shipped deployment assets (deploy/, helm/, docker-compose.yml, Dockerfile), shared
 * by the unit checks (test/unit/deploy.test.ts) and the live metrics check (test/integration).
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export const root = new URL('../../', import.meta.url);
export const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');
/** YAML 1.1 merge keys (`<<: *anchor`) on, as docker compose reads them. */
export const readYaml = (path: string): unknown => parse(read(path), { merge: true });
export const readJson = (path: string): unknown => JSON.parse(read(path));

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function alertRules(path = 'deploy/observability/prometheus-rules.yaml'): AlertRule[] {
  const doc = readYaml(path) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

export function dashboardExprs(path = 'deploy/observability/grafana-dashboard.json'): string[] {
  const doc = readJson(path) as { panels: Panel[] };
  const all = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...all(p.panels ?? [])]);
  return all(doc.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr));
}

/**
 * Metric families a PromQL expression reads: the identifiers of our namespaces, with the series
 * suffixes of histograms and summaries folded onto the family (`x_bucket` -> `x`).
 */
export function metricFamilies(expr: string): string[] {
  const names = expr.match(/\b(?:gateway|nodejs|process)_[a-z0-9_]+\b/g) ?? [];
  return [...new Set(names)];
}

/** Families named by every dashboard panel and alert rule. */
export function usedMetricFamilies(): string[] {
  const exprs = [...dashboardExprs(), ...alertRules().map((r) => r.expr)];
  return [...new Set(exprs.flatMap(metricFamilies))].sort();
}

/** The series a `/metrics` text exposition can hold, from its `# TYPE` lines. */
export function exposedSeries(exposition: string): Set<string> {
  const out = new Set<string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    out.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_count', '_sum']) out.add(name + s);
    if (type === 'summary') for (const s of ['_count', '_sum']) out.add(name + s);
  }
  return out;
}

/** README "Configuration" table: variable -> default ('' for "(none)"/"(empty)"). */
export function readmeDefaults(): Map<string, string> {
  const readme = read('README.md');
  const section = readme.slice(
    readme.indexOf('## Configuration'),
    readme.indexOf('## Failure behaviour'),
  );
  const out = new Map<string, string>();
  for (const m of section.matchAll(/^\| `([A-Z0-9_]+)` +\| ([^|]+?) +\|/gm)) {
    const cell = m[2] ?? '';
    out.set(m[1] ?? '', cell.startsWith('`') ? cell.slice(1, -1) : '');
  }
  return out;
}
