/**
 * API-key scopes: `<capability>:<action>[:<resource-glob>]`, e.g. `cache:read`,
 * `cache:write:ef:*`, `queue:consume:calc-*`; `<capability>:*` grants every action of a
 * capability; `admin` lets a key manage its own tenant's keys. Globs use `*` (any run of
 * characters, ':' included) and `?` (one character); every other character is literal.
 */

/** Every capability and its actions. A scope naming anything else is refused when a key is made. */
export const CAPABILITIES = {
  cache: ['read', 'write'],
  session: ['read', 'write'],
  ratelimit: ['check', 'reset'],
  queue: ['publish', 'consume', 'admin'],
  idempotency: ['use'],
} as const;

export type Capability = keyof typeof CAPABILITIES;

export interface Scope {
  readonly raw: string;
  readonly capability: string;
  /** An action, or '*' for all of the capability's actions. */
  readonly action: string;
  /** Restricts the scope to resources matching a glob; undefined means every resource. */
  readonly resource: RegExp | undefined;
  /** The glob itself, when there is one. */
  readonly glob?: string | undefined;
}

export const ADMIN_SCOPE = 'admin';

/** Turns a glob into an anchored RegExp: `*` any run, `?` one character, everything else literal. */
export function globToRegExp(glob: string): RegExp {
  let re = '^';
  for (const ch of glob) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(re + '$', 'su');
}

/** Parses one scope string. Returns the reason when invalid. */
export function parseScope(raw: string): Scope | string {
  if (raw === ADMIN_SCOPE)
    return { raw, capability: ADMIN_SCOPE, action: '*', resource: undefined };
  const first = raw.indexOf(':');
  if (first <= 0) return `"${raw}" is not <capability>:<action>[:<resource-glob>]`;
  const capability = raw.slice(0, first);
  const second = raw.indexOf(':', first + 1);
  const action = second === -1 ? raw.slice(first + 1) : raw.slice(first + 1, second);
  const glob = second === -1 ? undefined : raw.slice(second + 1);
  const actions = (CAPABILITIES as Record<string, readonly string[]>)[capability];
  if (actions === undefined) {
    return `"${raw}": unknown capability "${capability}" (known: ${Object.keys(CAPABILITIES).join(', ')}, admin)`;
  }
  if (action !== '*' && !actions.includes(action)) {
    return `"${raw}": unknown action "${action}" for ${capability} (known: ${actions.join(', ')}, *)`;
  }
  if (glob !== undefined && glob.length === 0) return `"${raw}": empty resource glob`;
  if (glob !== undefined && glob.length > 1024) return `"${raw}": resource glob too long`;
  return {
    raw,
    capability,
    action,
    resource: glob === undefined ? undefined : globToRegExp(glob),
    glob,
  };
}

/** Parses a list of scopes, throwing on the first invalid one (for trusted sources). */
export function parseScopes(raw: readonly string[]): Scope[] {
  return raw.map((r) => {
    const s = parseScope(r);
    if (typeof s === 'string') throw new Error(`invalid scope ${s}`);
    return s;
  });
}

function grants(s: Scope, capability: string, action: string): boolean {
  return s.capability === capability && (s.action === '*' || s.action === action);
}

/** True when some scope grants `capability:action` on at least some resource. */
export function hasCapability(
  scopes: readonly Scope[],
  capability: string,
  action: string,
): boolean {
  for (const s of scopes) if (grants(s, capability, action)) return true;
  return false;
}

/** True when some scope grants `capability:action` on every resource (no glob). */
export function allowsAll(scopes: readonly Scope[], capability: string, action: string): boolean {
  for (const s of scopes)
    if (grants(s, capability, action) && s.resource === undefined) return true;
  return false;
}

/**
 * True when some scope grants `capability:action` on every resource starting with `prefix`: no
 * glob, or a glob `<literal>*` whose literal is a prefix of `prefix`.
 */
export function allowsPrefix(
  scopes: readonly Scope[],
  capability: string,
  action: string,
  prefix: string,
): boolean {
  for (const s of scopes) {
    if (!grants(s, capability, action)) continue;
    if (s.glob === undefined) return true;
    const literal = s.glob.slice(0, -1);
    if (s.glob.endsWith('*') && !/[*?]/.test(literal) && prefix.startsWith(literal)) return true;
  }
  return false;
}

/** True when some scope grants `capability:action` on this resource. */
export function allowsResource(
  scopes: readonly Scope[],
  capability: string,
  action: string,
  resource: string,
): boolean {
  for (const s of scopes) {
    if (grants(s, capability, action) && (s.resource === undefined || s.resource.test(resource))) {
      return true;
    }
  }
  return false;
}
