/* global console, process */
// Writes deploy/observability/grafana-dashboard.json (and the Helm chart's copy). Edit the panels
// here, run `node scripts/dashboard.mjs`, commit both JSON files; a test checks every metric the
// panels use is one the gateway exports.
import { writeFileSync } from 'node:fs';

let id = 0;
let y = 0;
const ds = { type: 'prometheus', uid: '${datasource}' };
function panel(
  title,
  exprs,
  { unit = 'short', w = 12, h = 8, x = 0, type = 'timeseries', description = '' } = {},
) {
  id++;
  const p = {
    id,
    type,
    title,
    description,
    datasource: ds,
    gridPos: { h, w, x, y },
    fieldConfig: { defaults: { unit }, overrides: [] },
    options:
      type === 'timeseries'
        ? { legend: { displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'] } }
        : {},
    targets: exprs.map(([expr, legendFormat], i) => ({
      refId: String.fromCharCode(65 + i),
      expr,
      legendFormat,
      datasource: ds,
    })),
  };
  if (x + w >= 24) y += h;
  return p;
}
function row(title) {
  id++;
  const r = {
    id,
    type: 'row',
    title,
    collapsed: false,
    gridPos: { h: 1, w: 24, x: 0, y },
    panels: [],
  };
  y += 1;
  return r;
}
const rate = (m, by = '') => `sum${by ? ` by (${by})` : ''} (rate(${m}[$__rate_interval]))`;
const q = (p, by) =>
  `histogram_quantile(${p}, sum by (le, ${by}) (rate(gateway_http_request_duration_seconds_bucket[$__rate_interval])))`;

const panels = [
  row('HTTP'),
  panel(
    'Requests per second by route',
    [
      [
        rate('gateway_http_request_duration_seconds_count', 'route, method'),
        '{{method}} {{route}}',
      ],
    ],
    { unit: 'reqps' },
  ),
  panel(
    'Error ratio by status',
    [
      [
        `${rate('gateway_http_request_duration_seconds_count{status_code=~"[45].."}', 'status_code')} / ignoring(status_code) group_left ${rate('gateway_http_request_duration_seconds_count')}`,
        '{{status_code}}',
      ],
    ],
    { unit: 'percentunit', x: 12 },
  ),
  panel('p50 latency by route', [[q(0.5, 'route'), '{{route}}']], { unit: 's' }),
  panel('p99 latency by route', [[q(0.99, 'route'), '{{route}}']], { unit: 's', x: 12 }),
  panel(
    'Load shedding: requests answered 503 OVERLOADED, replicas shedding',
    [
      [rate('gateway_requests_shed_total', 'module'), 'shed {{module}}'],
      ['sum (gateway_overloaded)', 'replicas overloaded'],
    ],
    { unit: 'short' },
  ),
  panel(
    'Event-loop lag (mean)',
    [['max by (instance) (nodejs_eventloop_lag_mean_seconds)', '{{instance}}']],
    {
      unit: 's',
      x: 12,
      description:
        "Includes prom-client's 10 ms timer period (an idle replica shows 10 ms). A replica sheds load while this passes OVERLOAD_MAX_EVENT_LOOP_DELAY_MS + 10 ms.",
    },
  ),
  row('Cache'),
  panel('Hit ratio (last minute)', [['avg by (op) (gateway_cache_hit_ratio)', '{{op}}']], {
    unit: 'percentunit',
    w: 8,
  }),
  panel(
    'Lookups by result',
    [[rate('gateway_cache_lookups_total', 'op, result'), '{{op}} {{result}}']],
    { unit: 'ops', w: 8, x: 8 },
  ),
  panel(
    'Near-cache hits and size',
    [
      [rate('gateway_cache_local_hits_total'), 'local hits/s'],
      ['sum(gateway_cache_local_bytes)', 'bytes held'],
    ],
    { w: 8, x: 16 },
  ),
  panel(
    'Leases and invalidations',
    [
      [rate('gateway_cache_leases_total', 'outcome'), 'lease {{outcome}}'],
      [rate('gateway_cache_invalidated_keys_total', 'by'), 'invalidated by {{by}}'],
    ],
    { unit: 'ops' },
  ),
  panel(
    'Bytes written and saved by compression',
    [
      [rate('gateway_cache_stored_bytes_total'), 'written'],
      [rate('gateway_cache_compression_saved_bytes_total'), 'saved'],
    ],
    { unit: 'Bps', x: 12 },
  ),
  row('Rate limits'),
  panel(
    'Decisions by policy and outcome',
    [[rate('gateway_ratelimit_decisions_total', 'policy, outcome'), '{{policy}} {{outcome}}']],
    { unit: 'ops', w: 8 },
  ),
  panel(
    'Degraded decisions (Redis could not decide: fail-open / fail-closed)',
    [
      [
        rate('gateway_ratelimit_decisions_total{outcome=~"degraded_.*"}', 'policy, outcome'),
        '{{policy}} {{outcome}}',
      ],
    ],
    { unit: 'ops', w: 8, x: 8 },
  ),
  panel(
    'Answered without Redis (remembered denials, units from leases); quota refusals',
    [
      [rate('gateway_ratelimit_local_denials_total'), 'local denials'],
      [rate('gateway_ratelimit_lease_units_total', 'event'), 'lease units {{event}}'],
      [rate('gateway_quota_exceeded_total'), 'quota exceeded'],
      [rate('gateway_quota_flush_errors_total'), 'quota flush errors'],
    ],
    { unit: 'ops', w: 8, x: 16 },
  ),
  panel(
    'Rate-limit checks per Redis call (batching of one event-loop turn)',
    [
      [
        `${rate('gateway_ratelimit_batch_checks_sum')} / ${rate('gateway_ratelimit_batch_checks_count')}`,
        'checks per call',
      ],
      [rate('gateway_ratelimit_batch_checks_count'), 'script calls/s'],
    ],
    { w: 8, h: 6 },
  ),
  panel(
    'gRPC rate limit service (Envoy RLS): calls by status',
    [[rate('gateway_rls_request_duration_seconds_count', 'code'), '{{code}}']],
    { unit: 'ops', w: 8, h: 6, x: 8 },
  ),
  panel(
    'gRPC rate limit service: p99 call duration',
    [
      [
        'histogram_quantile(0.99, sum by (le) (rate(gateway_rls_request_duration_seconds_bucket[$__rate_interval])))',
        'p99',
      ],
    ],
    { unit: 's', w: 8, h: 6, x: 16 },
  ),
  panel(
    'Every limit in shadow mode (policies file shadow: true); shadow denials',
    [
      ['max(gateway_ratelimit_shadow_all)', 'shadow: true'],
      [rate('gateway_ratelimit_decisions_total{outcome="shadow_denied"}'), 'shadow denials/s'],
    ],
    { w: 8, h: 6 },
  ),
  panel(
    'gRPC rate limit service: days until its TLS certificates expire',
    [
      [
        'min by (certificate) (gateway_rls_tls_certificate_expiry_timestamp_seconds - time()) / 86400',
        '{{certificate}}',
      ],
    ],
    { w: 16, h: 6, x: 8 },
  ),
  row('Sessions and idempotency'),
  panel('Session events', [[rate('gateway_session_events_total', 'event'), '{{event}}']], {
    unit: 'ops',
    w: 8,
  }),
  panel(
    'Idempotency outcomes',
    [[rate('gateway_idempotency_outcomes_total', 'outcome'), '{{outcome}}']],
    { unit: 'ops', w: 8, x: 8 },
  ),
  panel(
    'Durable writes (WAIT) by result',
    [[rate('gateway_durable_writes_total', 'module, result'), '{{module}} {{result}}']],
    { unit: 'ops', w: 8, x: 16 },
  ),
  row('Queues'),
  panel(
    'Queue messages by event (all queues)',
    [[rate('gateway_queue_messages_total', 'event'), '{{event}}']],
    { unit: 'ops', w: 8 },
  ),
  panel(
    'Long polls: woken, timed out, degraded (pool exhausted)',
    [[rate('gateway_queue_long_polls_total', 'result'), '{{result}}']],
    { unit: 'ops', w: 8, x: 8 },
  ),
  panel(
    'Long-poll connections in use',
    [['max by (state) (gateway_queue_blocking_connections)', '{{state}}']],
    { w: 8, x: 16 },
  ),
  row('Redis'),
  panel('Connection ready by role', [['min by (role) (gateway_redis_client_ready)', '{{role}}']], {
    w: 8,
  }),
  panel(
    'Failovers, reconnects, retries',
    [
      ['sum(increase(gateway_redis_failovers_total[$__range]))', 'failovers'],
      [rate('gateway_redis_reconnects_total', 'role'), 'reconnects {{role}}'],
      [rate('gateway_redis_retries_total', 'reason'), 'retried {{reason}}'],
    ],
    { w: 8, x: 8 },
  ),
  panel(
    'Redis errors by module and kind',
    [[rate('gateway_redis_errors_total', 'module, kind'), '{{module}} {{kind}}']],
    { unit: 'ops', w: 8, x: 16 },
  ),
  panel(
    'Sentinels naming the master, and saying a failover could be authorized (lowest over the replicas)',
    [
      ['min by (sentinel) (gateway_redis_sentinel_up)', 'names the master {{sentinel}}'],
      ['min by (sentinel) (gateway_redis_sentinel_quorum)', 'quorum {{sentinel}}'],
    ],
    {
      w: 8,
      description:
        'Each sentinel of REDIS_SENTINELS is asked for the master every REDIS_SENTINEL_PROBE_INTERVAL_MS; 0 when some replica got no master from it (the next reconnect would skip it).',
    },
  ),
  panel(
    'Distinct masters the sentinels name',
    [['max by (instance) (gateway_redis_sentinel_masters)', '{{instance}}']],
    {
      w: 8,
      x: 8,
      description:
        '1 when the sentinels agree; above 1 for more than a moment means a stale sentinel; 0 when none answers.',
    },
  ),
  panel(
    'Master settings that keep writes (1 = as recommended)',
    [['min by (setting) (gateway_redis_setting_ok)', '{{setting}}']],
    {
      w: 8,
      x: 16,
      description:
        "Read at each connection to a master: persistence (appendonly), eviction (maxmemory-policy noeviction), min_replicas (min-replicas-to-write), acl (the gateway user has every grant of users.acl's gateway line). See the runbook, CacheGatewayRedisEvictionPolicy and CacheGatewayRedisAclMissing.",
    },
  ),
  row('Auth'),
  panel(
    'Refused credentials by reason',
    [[rate('gateway_auth_failures_total', 'reason'), '{{reason}}']],
    { unit: 'ops' },
  ),
  panel('API-key cache', [[rate('gateway_auth_cache_lookups_total', 'result'), '{{result}}']], {
    unit: 'ops',
    x: 12,
  }),
  row('Process'),
  panel(
    'Event-loop delay (p99)',
    [['max by (instance) (nodejs_eventloop_lag_p99_seconds)', '{{instance}}']],
    { unit: 's', w: 8 },
  ),
  panel(
    'Memory',
    [
      ['sum by (instance) (process_resident_memory_bytes)', 'rss {{instance}}'],
      ['sum by (instance) (nodejs_heap_size_used_bytes)', 'heap {{instance}}'],
    ],
    { unit: 'bytes', w: 8, x: 8 },
  ),
  panel(
    'CPU',
    [['sum by (instance) (rate(process_cpu_seconds_total[$__rate_interval]))', '{{instance}}']],
    { unit: 'percentunit', w: 8, x: 16 },
  ),
];

const dashboard = {
  uid: 'cache-gateway',
  title: 'cache-gateway',
  tags: ['cache-gateway', 'redis'],
  timezone: 'browser',
  schemaVersion: 39,
  version: 1,
  refresh: '30s',
  time: { from: 'now-1h', to: 'now' },
  templating: {
    list: [
      {
        name: 'datasource',
        type: 'datasource',
        query: 'prometheus',
        current: { text: 'Prometheus', value: 'prometheus' },
      },
    ],
  },
  panels,
};
const text = `${JSON.stringify(dashboard, null, 2)}\n`;
if (process.argv.includes('--stdout')) {
  process.stdout.write(text);
} else {
  for (const file of [
    'deploy/observability/grafana-dashboard.json',
    'helm/cache-gateway/files/grafana-dashboard.json',
  ])
    writeFileSync(file, text);
  console.log(`wrote ${panels.length} panels`);
}
