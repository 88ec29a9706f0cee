/**
 * A client of the gateway's gRPC rate limit service (envoy.service.ratelimit.v3), as Envoy's
 * ratelimit filter calls it: one HTTP/2 connection, the API key in metadata; and the service on a
 * test app's deps. For tests and the bench.
 */
import * as grpc from '@grpc/grpc-js';
import type { Deps } from '../../src/deps.js';
import {
  RLS_SERVICE,
  type RlsServerOptions,
  startRlsServer,
} from '../../src/modules/ratelimit/rls-grpc.js';

export interface RlsStatus {
  code?: string;
  currentLimit?: { requestsPerUnit?: number; unit?: string };
  limitRemaining?: number;
  durationUntilReset?: { seconds?: number };
}

export interface RlsResponse {
  overallCode?: string;
  statuses?: RlsStatus[];
  responseHeadersToAdd?: { key: string; value: string }[];
}

type Raw = {
  ShouldRateLimit(
    r: object,
    m: grpc.Metadata,
    cb: (e: grpc.ServiceError | null, r?: RlsResponse) => void,
  ): void;
  close(): void;
};

const Client = grpc.makeGenericClientConstructor(RLS_SERVICE, 'RateLimitService');

/** A client on 127.0.0.1:port, plaintext unless given TLS credentials. */
export function rlsClient(
  port: number,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
) {
  // TLS: the test certificates name localhost (a TLS server name may not be an IP address).
  const raw = new Client(`127.0.0.1:${port}`, credentials, {
    'grpc.ssl_target_name_override': 'localhost',
  }) as unknown as Raw;
  return {
    /** One ShouldRateLimit call with these metadata headers: the response, or the gRPC error. */
    call(
      request: object,
      headers: Record<string, string>,
    ): Promise<{ response?: RlsResponse; error?: grpc.ServiceError }> {
      const m = new grpc.Metadata();
      for (const [k, v] of Object.entries(headers)) m.set(k, v);
      return new Promise((resolve) =>
        raw.ShouldRateLimit(request, m, (error, response) =>
          resolve(error ? { error } : { response: response ?? {} }),
        ),
      );
    },
    close: () => raw.close(),
  };
}

/**
 * The gRPC rate limit service on `deps`, on a free loopback port: these options over plain
 * defaults (no legacy headers, never draining, started).
 */
export function startTestRlsServer(deps: Deps, options: Partial<RlsServerOptions> = {}) {
  return startRlsServer(
    {
      envoy: deps.envoy,
      verifyApiKey: (k) => deps.admin.verifyApiKey(k),
      legacyHeaders: false,
      draining: () => false,
      started: () => true,
      ...options,
    },
    '127.0.0.1',
    0,
  );
}
