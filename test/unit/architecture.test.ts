/**
 * The folder arrows of DESIGN.md, checked on every import in src/:
 * modules never import each other; http/, redis/, observability/ and the root files below app.ts
 * never import a module; only main.ts reads process.env; Redis keys are built only in redis/keys.ts.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = fileURLToPath(new URL('../../src', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const all = files(src).map((f) => {
  const text = readFileSync(f, 'utf8');
  const imports = [...text.matchAll(/from '(\.[^']+)'/g)].map((m) =>
    relative(src, resolve(dirname(f), m[1] as string)).replace(/\.js$/, '.ts'),
  );
  return { file: relative(src, f), text, imports };
});

const moduleOf = (p: string) => (p.startsWith('modules/') ? p.split('/')[1] : undefined);

describe('architecture', () => {
  it('no module imports another module', () => {
    for (const f of all) {
      const own = moduleOf(f.file);
      if (own === undefined) continue;
      for (const imp of f.imports) {
        const other = moduleOf(imp);
        expect(other === undefined || other === own, `${f.file} imports ${imp}`).toBe(true);
      }
    }
  });

  it('shared layers never import modules, app, deps or main', () => {
    for (const f of all) {
      if (
        /^(http|redis|observability)\//.test(f.file) ||
        ['errors.ts', 'clock.ts', 'config.ts', 'random.ts'].includes(f.file)
      ) {
        for (const imp of f.imports) {
          expect(
            /^(modules\/|app\.ts|deps\.ts|main\.ts)/.test(imp),
            `${f.file} imports ${imp}`,
          ).toBe(false);
        }
      }
    }
  });

  it('only main.ts reads process.env', () => {
    for (const f of all) {
      if (f.file === 'main.ts') continue;
      expect(f.text.includes('process.env'), f.file).toBe(false);
    }
  });

  it('services and Lua-free files never touch Fastify request/reply; routes never call Redis', () => {
    for (const f of all) {
      if (f.file.endsWith('/service.ts'))
        expect(f.text, f.file).not.toMatch(/from 'fastify'|FastifyRequest|FastifyReply/);
      if (f.file.endsWith('/routes.ts'))
        expect(f.text, f.file).not.toMatch(/ioredis|\.primary\b|redis\./);
    }
  });

  it('Redis keys are built only in redis/keys.ts', () => {
    for (const f of all) {
      if (f.file === 'redis/keys.ts') continue;
      // A template or concatenation that starts a key with a tenant or _gw: prefix.
      expect(f.text, f.file).not.toMatch(/`\$\{tenant\}:|'_gw:|"_gw:|`_gw:/);
    }
  });
});
