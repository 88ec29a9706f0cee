/**
 * Authentication and authorization of every request, in one onRequest hook.
 *
 * A route declares what it needs in its config: `auth: 'none'` (probes, docs), `auth: 'admin'`
 * (operator ADMIN_TOKEN, or an API key with the `admin` scope acting on its own tenant), or by
 * default an API key holding `scope` (e.g. 'cache:read'). The tenant always comes from the
 * credential. Resource-level scope globs (`cache:read:ef:*`) are checked by the route with
 * `authorizeResource` once the resource is known and validated.
 */
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { AppError } from '../errors.js';
import {
  ADMIN_SCOPE,
  type Scope,
  allowsAll,
  allowsPrefix,
  allowsResource,
  hasCapability,
} from './scopes.js';

/** Who is calling. */
export interface Principal {
  readonly kind: 'apiKey' | 'operator';
  /** The tenant the credential belongs to; '*' for the operator. */
  readonly tenant: string;
  /** The API key id ('operator' for ADMIN_TOKEN). */
  readonly keyId: string;
  readonly scopes: readonly Scope[];
}

export type AuthMode = 'apiKey' | 'admin' | 'none';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Defaults to 'apiKey'. */
    auth?: AuthMode;
    /** `<capability>:<action>` an API key must hold (on some resource) to call the route. */
    scope?: string;
    /** The module serving the route, for metrics labels. */
    module?: string;
    /**
     * Read the API key only from this (lower-case) header, e.g. `x-gateway-key` for the
     * rate-limit hook, so the end user's Authorization header stays the proxied request's own.
     */
    credentialHeader?: string;
    /**
     * false: never shed while overloaded (the rate-limit decisions, which fall back on their
     * policy's failure mode instead). Probes (module 'health') are never shed either.
     */
    shed?: false;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

/** Why a presented credential was refused; every reason gets the same 401 answer. */
export type AuthFailure = 'missing' | 'malformed' | 'unknown' | 'revoked' | 'expired' | 'scope';

export interface AuthHookOptions {
  /**
   * Verifies a presented API key. Returns the principal, or the reason it is refused. May answer
   * synchronously (cache hit) so the hot path allocates no promise.
   */
  verifyApiKey(presented: string): Principal | AuthFailure | Promise<Principal | AuthFailure>;
  /** True when the bearer token is the operator's ADMIN_TOKEN (constant-time comparison). */
  isAdminToken(token: string): boolean;
  onFailure?(reason: AuthFailure): void;
}

const OPERATOR: Principal = { kind: 'operator', tenant: '*', keyId: 'operator', scopes: [] };

function presentedCredential(
  request: FastifyRequest,
  only: string | undefined,
): string | undefined {
  const h = request.headers;
  if (only !== undefined) {
    const v = h[only];
    return typeof v === 'string' ? v.trim() : undefined;
  }
  const authz = h.authorization;
  if (authz !== undefined) {
    if (authz.length > 7 && authz.slice(0, 7).toLowerCase() === 'bearer ')
      return authz.slice(7).trim();
    return '';
  }
  const apiKey = h['x-api-key'];
  if (typeof apiKey === 'string') return apiKey.trim();
  return undefined;
}

const unauthorized = () =>
  new AppError(
    'UNAUTHORIZED',
    'A valid API key is required (Authorization: Bearer <key> or X-API-Key; X-Gateway-Key on the rate-limit hook).',
    {
      headers: { 'www-authenticate': 'Bearer realm="cache-gateway"' },
    },
  );

const scopeCache = new Map<string, [string, string]>();
function splitScope(scope: string): [string, string] {
  let s = scopeCache.get(scope);
  if (s === undefined) {
    const i = scope.indexOf(':');
    s = [scope.slice(0, i), scope.slice(i + 1)];
    scopeCache.set(scope, s);
  }
  return s;
}

/** Builds the global onRequest hook. */
export function createAuthHook(opts: AuthHookOptions): onRequestHookHandler {
  const fail = (reason: AuthFailure): AppError => {
    opts.onFailure?.(reason);
    return reason === 'scope'
      ? new AppError('SCOPE_MISSING', 'The API key lacks the scope this route needs.')
      : unauthorized();
  };

  const admit = (
    request: FastifyRequest,
    mode: AuthMode,
    scope: string | undefined,
    result: Principal | AuthFailure,
  ): AppError | undefined => {
    if (typeof result === 'string') return fail(result);
    if (mode === 'admin') {
      if (!result.scopes.some((s) => s.capability === ADMIN_SCOPE)) {
        opts.onFailure?.('scope');
        return new AppError(
          'SCOPE_MISSING',
          `This route needs the ADMIN_TOKEN or an API key with the "${ADMIN_SCOPE}" scope.`,
        );
      }
    } else if (scope !== undefined) {
      const [capability, action] = splitScope(scope);
      if (!hasCapability(result.scopes, capability, action)) {
        opts.onFailure?.('scope');
        return new AppError('SCOPE_MISSING', `The API key lacks the "${scope}" scope.`);
      }
    }
    request.principal = result;
    return undefined;
  };

  return function authHook(
    request: FastifyRequest,
    _reply: FastifyReply,
    done: (err?: Error) => void,
  ) {
    if (request.is404) return done();
    const config = request.routeOptions.config;
    const mode: AuthMode = config.auth ?? 'apiKey';
    if (mode === 'none') return done();
    const presented = presentedCredential(request, config.credentialHeader);
    if (presented === undefined || presented === '')
      return done(fail(presented === undefined ? 'missing' : 'malformed'));
    if (mode === 'admin' && opts.isAdminToken(presented)) {
      request.principal = OPERATOR;
      return done();
    }
    const result = opts.verifyApiKey(presented);
    if (result instanceof Promise) {
      result.then(
        (r) => done(admit(request, mode, config.scope, r)),
        (err: unknown) => done(err as Error),
      );
      return;
    }
    done(admit(request, mode, config.scope, result));
  };
}

/** The authenticated principal of a route that requires one. */
export function principalOf(request: FastifyRequest): Principal {
  const p = request.principal;
  if (p === undefined) throw new Error('route reached without authentication');
  return p;
}

/** Throws 403 unless the principal may act on every resource under `prefix` (listing, bulk deletes). */
export function authorizePrefix(
  principal: Principal,
  scope: string,
  prefix: string,
  field: string,
): void {
  const [capability, action] = splitScope(scope);
  if (!allowsPrefix(principal.scopes, capability, action, prefix)) {
    throw new AppError(
      'SCOPE_MISSING',
      `The API key's "${scope}" scopes do not cover every key under ${field}.`,
      {
        errors: [{ field, message: `not covered by the key's ${scope} scopes` }],
      },
    );
  }
}

/** Throws 403 unless the principal holds `scope` without a resource restriction. */
export function authorizeAll(principal: Principal, scope: string, what: string): void {
  const [capability, action] = splitScope(scope);
  if (!allowsAll(principal.scopes, capability, action)) {
    throw new AppError(
      'SCOPE_MISSING',
      `${what} needs the "${scope}" scope without a resource glob.`,
    );
  }
}

/**
 * For a resource whose owner is known only once it has been read (a session by its id): passes
 * when the principal holds `scope` without a glob (no read), or when `ownerOf()` names an owner
 * its globs cover. An owner outside the globs, or no owner (the resource does not exist), throws
 * `hidden()`, the resource's own not-found error: a confined key can neither act on nor learn of
 * what lies outside its globs. Without `scope` at all, 403.
 */
export async function authorizeOwner(
  principal: Principal,
  scope: string,
  ownerOf: () => Promise<string | undefined>,
  hidden: () => Error,
): Promise<void> {
  const [capability, action] = splitScope(scope);
  if (allowsAll(principal.scopes, capability, action)) return;
  if (!hasCapability(principal.scopes, capability, action)) {
    throw new AppError('SCOPE_MISSING', `The API key lacks the "${scope}" scope.`);
  }
  const owner = await ownerOf();
  if (owner === undefined || !allowsResource(principal.scopes, capability, action, owner)) {
    throw hidden();
  }
}

/**
 * Throws 403 unless the principal may act on this resource (scope globs such as `cache:read:ef:*`).
 * `field` names the request field holding the resource, for the problem body.
 */
export function authorizeResource(
  principal: Principal,
  scope: string,
  resource: string,
  field: string,
): void {
  const [capability, action] = splitScope(scope);
  if (!allowsResource(principal.scopes, capability, action, resource)) {
    throw new AppError('SCOPE_MISSING', `The API key's "${scope}" scope does not cover ${field}.`, {
      errors: [{ field, message: `not covered by the key's ${scope} scopes` }],
    });
  }
}
