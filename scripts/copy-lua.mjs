/* global console */
// Copies every src/**/*.lua next to the compiled JS in dist/ (scripts are read at startup).
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

let n = 0;
for (const file of walk('src').filter((f) => f.endsWith('.lua'))) {
  cpSync(file, join('dist', relative('src', file)));
  n++;
}
console.log(`copied ${n} Lua scripts to dist/`);
