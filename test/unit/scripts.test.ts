import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SCRIPTS, loadScripts } from '../../src/redis/scripts.js';

const src = fileURLToPath(new URL('../../src', import.meta.url));

function luaFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? luaFiles(p) : p.endsWith('.lua') ? [relative(src, p)] : [];
  });
}

describe('Lua scripts table', () => {
  it('lists every .lua file exactly once', () => {
    // A library file may be spliced into several scripts; a script file is listed once.
    const listed = [...new Set(SCRIPTS.flatMap((s) => [s.file, ...(s.include ?? [])]))].sort();
    expect(listed).toEqual(luaFiles(src).sort());
    expect(new Set(SCRIPTS.map((s) => s.file)).size).toBe(SCRIPTS.length);
    expect(new Set(SCRIPTS.map((s) => s.name)).size).toBe(SCRIPTS.length);
  });

  it('matches file suffix, numberOfKeys and the header KEYS', () => {
    for (const s of loadScripts()) {
      const suffix = /-(\d+|n)\.lua$/.exec(s.file)?.[1];
      expect(suffix === 'n' ? undefined : Number(suffix), s.file).toBe(s.numberOfKeys);
      const header = /^--\[\[([\s\S]*?)\]\]/.exec(s.lua)?.[1] ?? '';
      expect(header, `${s.file} needs a header comment`).not.toBe('');
      if (s.numberOfKeys === undefined) {
        expect(header, `${s.file}: variadic KEYS in the header`).toMatch(/KEYS\[1\.\.n\]/);
      } else {
        const declared = new Set([...header.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1])));
        expect(Math.max(0, ...declared), `${s.file}: KEYS in the header`).toBe(s.numberOfKeys);
      }
      for (const lib of s.include ?? []) {
        expect(s.lua, `${s.file} splices ${lib}`).not.toContain('-- @include');
        expect(s.lua).toContain(readFileSync(join(src, lib), 'utf8').split('\n')[1]);
      }
      expect(header, `${s.file}: header documents the return`).toMatch(/Returns/);
      const used = new Set([...s.lua.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1])));
      if (s.numberOfKeys !== undefined)
        expect(Math.max(0, ...used), `${s.file}: KEYS used`).toBeLessThanOrEqual(s.numberOfKeys);
      expect(s.lua, `${s.file} must take time as an argument`).not.toMatch(
        /redis\.call\(\s*'TIME'/i,
      );
    }
  });

  it('is the only place Lua is defined (no inline scripts in src)', () => {
    const ts = (dir: string): string[] =>
      readdirSync(dir).flatMap((n) => {
        const p = join(dir, n);
        return statSync(p).isDirectory() ? ts(p) : p.endsWith('.ts') ? [p] : [];
      });
    for (const file of ts(src)) {
      const text = readFileSync(file, 'utf8');
      expect(text, file).not.toMatch(/redis\.call\(/);
      expect(text, file).not.toMatch(/\.eval(sha)?\(/);
    }
  });
});
