/**
 * Renders the OpenAPI document from the routes (no Redis connection is made) and writes it to
 * openapi.yaml (--write) or fails when the committed file differs (--check).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { buildApp } from '../src/app.js';
import { parseConfig } from '../src/config.js';
import { createDeps } from '../src/deps.js';

export const OPENAPI_FILE = fileURLToPath(new URL('../openapi.yaml', import.meta.url));

const HEADER = '# Generated from the route schemas by `npm run openapi`. Do not edit by hand.\n';

/** The document as YAML, exactly as `npm run openapi` writes it. */
export async function renderOpenApi(): Promise<string> {
  const config = parseConfig({ LOG_LEVEL: 'silent', METRICS_PORT: '0' });
  const deps = createDeps(config, pino({ level: 'silent' }), { lazyConnect: true });
  try {
    const app = await buildApp(deps);
    await app.ready();
    // A plain JSON copy first, so the YAML has no anchors/aliases (some generators reject them).
    const yaml = stringify(JSON.parse(JSON.stringify(app.swagger())), {
      aliasDuplicateObjects: false,
      lineWidth: 0,
    });
    await app.close();
    return HEADER + yaml;
  } finally {
    await deps.close();
  }
}

async function cli(): Promise<void> {
  const mode = process.argv[2];
  const doc = await renderOpenApi();
  if (mode === '--write') {
    writeFileSync(OPENAPI_FILE, doc);
    console.log(`wrote ${OPENAPI_FILE}`);
  } else if (mode === '--check') {
    let committed = '';
    try {
      committed = readFileSync(OPENAPI_FILE, 'utf8');
    } catch {
      /* missing counts as drift */
    }
    if (committed !== doc) {
      console.error(
        'openapi.yaml is out of date with the routes: run `npm run openapi` and commit the result.',
      );
      process.exit(1);
    }
    console.log('openapi.yaml matches the routes');
  } else {
    process.stdout.write(doc);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  cli().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
