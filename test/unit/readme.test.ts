import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../src/config.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents exactly the variables the config schema reads', () => {
    const section = readme.slice(
      readme.indexOf('## Configuration'),
      readme.indexOf('## Failure behaviour'),
    );
    const documented = [...section.matchAll(/^\| `([A-Z0-9_]+)` +\|/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual([...CONFIG_VARIABLES].sort());
  });

  it('holds exactly two set-up commands', () => {
    const quick = readme.slice(
      readme.indexOf('## Quick start'),
      readme.indexOf('## Using the API'),
    );
    const block = /```sh\n([\s\S]*?)```/.exec(quick)?.[1] ?? '';
    const commands = block.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
    expect(commands.map((c) => c.split('#')[0]?.trim())).toEqual(['npm run local', 'npm test']);
  });
});
