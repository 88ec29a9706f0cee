/**
 * Metrics of the stateful capabilities: session lifecycle events, idempotency outcomes and
 * durable writes (WAIT). Labels are fixed vocabularies; session ids, user ids and idempotency
 * keys never become labels.
 */
import type { Registry } from 'prom-client';
import { type CounterSeries, FastCounter } from './fast-metrics.js';

export type SessionEvent =
  | 'created'
  | 'evicted'
  | 'read'
  | 'touched'
  | 'touch_throttled'
  | 'updated'
  | 'rotated'
  | 'deleted'
  | 'revoked'
  | 'not_found';
export type IdempotencyOutcome =
  | 'started'
  | 'taken_over'
  | 'replayed'
  | 'in_progress'
  | 'mismatch'
  | 'completed'
  | 'token_mismatch'
  | 'released';

export interface StateMetrics {
  session(event: SessionEvent, n?: number): void;
  idempotency(outcome: IdempotencyOutcome): void;
  /** result: confirmed (a replica has it) or unconfirmed (answered 503). */
  durable(module: string, result: 'confirmed' | 'unconfirmed'): void;
}

function seriesCache<L extends string>(counter: FastCounter<L>) {
  const series = new Map<string, CounterSeries>();
  return (labels: Record<L, string>, n = 1) => {
    const id = Object.values(labels).join('|');
    let s = series.get(id);
    if (s === undefined) {
      s = counter.child(labels);
      series.set(id, s);
    }
    s.inc(n);
  };
}

export function createStateMetrics(registry: Registry): StateMetrics {
  const sessions = seriesCache(
    new FastCounter(
      'gateway_session_events_total',
      'Session events: created, evicted (the least recently active session of a user at SESSION_MAX_PER_USER), read, touched, touch_throttled (a touch that wrote nothing: within SESSION_TOUCH_AFTER_SECONDS of the last one, or from a gateway whose clock runs behind the one that last slid the session), updated, rotated, deleted, revoked (by a revoke-all), not_found (unknown or expired id presented).',
      ['event'] as const,
    ).register(registry),
  );
  const idempotency = seriesCache(
    new FastCounter(
      'gateway_idempotency_outcomes_total',
      "Idempotency-key transitions: started, taken_over (the previous holder's lock had expired), replayed (a completed response returned), in_progress (409), mismatch (fingerprint differs: 422), completed, token_mismatch (409), released.",
      ['outcome'] as const,
    ).register(registry),
  );
  const durable = seriesCache(
    new FastCounter(
      'gateway_durable_writes_total',
      'Writes made with durable: true, by module and result: confirmed (WAIT saw DURABLE_REPLICAS replicas) or unconfirmed (answered 503; the write may be lost in a failover).',
      ['module', 'result'] as const,
    ).register(registry),
  );
  return {
    session: (event, n = 1) => sessions({ event }, n),
    idempotency: (outcome) => idempotency({ outcome }),
    durable: (module, result) => durable({ module, result }),
  };
}
