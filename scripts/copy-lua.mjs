/* global console */
// Copies every src/**/*.lua and *.proto next to the compiled JS in dist/ (read at startup).
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

const copy = (ext) => {
  const files = walk('src').filter((f) => f.endsWith(ext));
  for (const file of files) cpSync(file, join('dist', relative('src', file)));
  return files.length;
};
const lua = copy('.lua');
const proto = copy('.proto');
console.log(`copied ${lua} Lua scripts and ${proto} proto files to dist/`);
