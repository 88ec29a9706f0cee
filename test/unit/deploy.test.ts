/**
 * The deployment assets are only ever run elsewhere (no Docker engine or helm binary here), so
 * their contracts with the code are checked by reading them: a renamed variable, a values key a
 * template reads but values.yaml lacks, a dashboard that drifted from its generator, an alert
 * without a runbook entry or an ACL file the configs disagree with each breaks a test.
 */
import { existsSync, readdirSync } from 'node:fs';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, SECRET_VARIABLES, parseConfig } from '../../src/config.js';
import { parsePoliciesFile } from '../../src/modules/ratelimit/policy.js';
import {
  alertRules,
  dashboardExprs,
  read,
  readJson,
  readYaml,
  readmeDefaults,
  root,
  usedMetricFamilies,
} from '../harness/deploy-assets.js';

const CHART = 'helm/cache-gateway/';
const values = readYaml(`${CHART}values.yaml`) as Record<string, unknown> & {
  env: Record<string, string>;
};
/** Variables the chart sets from its Secret and mounts rather than from `values.env`. */
const FROM_SECRET = [...SECRET_VARIABLES, 'API_KEYS_FILE'];

describe('docker-compose.yml', () => {
  const compose = readYaml('docker-compose.yml') as {
    services: Record<
      string,
      {
        build?: unknown;
        image?: string;
        environment?: Record<string, string>;
        volumes?: string[];
        depends_on?: Record<string, { condition: string }> | string[];
        healthcheck?: unknown;
        profiles?: string[];
      }
    >;
  };
  const services = compose.services;

  it('runs 1 master, 2 replicas, 3 sentinels on an official Redis 7 image, and the gateway', () => {
    const redis = Object.entries(services).filter(([n]) => n.startsWith('redis-'));
    const sentinels = Object.entries(services).filter(([n]) => n.startsWith('sentinel-'));
    expect(redis.map(([n]) => n).sort()).toEqual([
      'redis-master',
      'redis-replica-1',
      'redis-replica-2',
    ]);
    expect(sentinels).toHaveLength(3);
    for (const [, s] of [...redis, ...sentinels]) {
      expect(s.image).toMatch(/^redis:7\.\d+/);
      expect(s.healthcheck).toBeDefined();
    }
    expect(services.gateway?.build).toBeDefined();
  });

  it('gives the gateway only variables the config schema reads, and valid values', () => {
    const env = services.gateway?.environment ?? {};
    for (const name of Object.keys(env)) expect(CONFIG_VARIABLES).toContain(name);
    expect(() => parseConfig(env)).not.toThrow();
    expect(env.REDIS_USERNAME).toBe('gateway');
    expect(env.REDIS_PASSWORD).toBe(/>(\S+)/.exec(aclLine('gateway'))?.[1]);
    const sentinels = (env.REDIS_SENTINELS ?? '').split(',').map((s) => s.split(':')[0]);
    expect(sentinels.sort()).toEqual(['sentinel-1', 'sentinel-2', 'sentinel-3']);
  });

  it('starts in order: the gateway waits for healthy sentinels, sentinels for healthy Redis', () => {
    const conditions = (name: string) =>
      services[name]?.depends_on as Record<string, { condition: string }>;
    for (const s of ['sentinel-1', 'sentinel-2', 'sentinel-3'])
      expect(conditions('gateway')[s]?.condition).toBe('service_healthy');
    for (const r of ['redis-master', 'redis-replica-1', 'redis-replica-2'])
      expect(conditions('sentinel-1')[r]?.condition).toBe('service_healthy');
    expect(services.gateway?.healthcheck).toBeDefined();
  });

  it('keeps Prometheus and Grafana behind a profile, with files that exist', () => {
    for (const name of ['prometheus', 'grafana'])
      expect(services[name]?.profiles).toEqual(['observability']);
    for (const s of Object.values(services))
      for (const v of s.volumes ?? []) {
        const src = v.split(':')[0] ?? '';
        if (src.startsWith('./')) expect(existsSync(new URL(src, root)), src).toBe(true);
      }
  });
});

function aclLine(user: string): string {
  const line = read('deploy/redis/users.acl')
    .split('\n')
    .find((l) => l.startsWith(`user ${user} `));
  if (line === undefined) throw new Error(`users.acl has no user ${user}`);
  return line;
}

describe('deploy/redis', () => {
  const redisConf = read('deploy/redis/redis.conf');
  const sentinelConf = read('deploy/redis/sentinel.conf');
  const directive = (conf: string, name: string) =>
    conf
      .split('\n')
      .filter((l) => l.startsWith(`${name} `))
      .map((l) => l.slice(name.length + 1).trim());

  it('holds the production settings the gateway relies on', () => {
    expect(directive(redisConf, 'appendonly')).toEqual(['yes']);
    expect(directive(redisConf, 'appendfsync')).toEqual(['everysec']);
    expect(directive(redisConf, 'min-replicas-to-write')).toEqual(['1']);
    expect(directive(redisConf, 'min-replicas-max-lag')).toEqual(['10']);
    expect(directive(redisConf, 'maxmemory-policy')).toEqual(['noeviction']);
    expect(directive(redisConf, 'aclfile')).toHaveLength(1);
    expect(directive(sentinelConf, 'sentinel monitor')[0]).toMatch(/^mymaster \S+ 6379 2$/);
  });

  it('turns the default user off and logs replicas and sentinels in as the users the file defines', () => {
    // Off (nobody logs in as it), but with every permission: Redis replays the AOF's MULTI/EXEC
    // blocks (every script that writes twice) as the default user at a restart, and drops those
    // it may not run (deploy/redis/README.md; test/sentinel/durable.test.ts).
    expect(aclLine('default')).toBe('user default off ~* &* +@all');
    const replicaPass = />(\S+)/.exec(aclLine('replica'))?.[1];
    expect(directive(redisConf, 'masteruser')).toEqual(['replica']);
    expect(directive(redisConf, 'masterauth')).toEqual([replicaPass]);
    const sentinelPass = />(\S+)/.exec(aclLine('sentinel'))?.[1];
    expect(directive(sentinelConf, 'sentinel auth-user')).toEqual(['mymaster sentinel']);
    expect(directive(sentinelConf, 'sentinel auth-pass')).toEqual([`mymaster ${sentinelPass}`]);
  });

  it('never grants the gateway dangerous commands or all keys', () => {
    const gateway = aclLine('gateway');
    for (const bad of [
      '+@all',
      '+flushall',
      '+flushdb',
      '+keys',
      '+config',
      '+debug',
      'allkeys',
      '~*',
      'allcommands',
    ])
      expect(gateway.split(' ')).not.toContain(bad);
    expect(aclLine('monitor')).not.toMatch(/ ~/); // no key access at all
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const froms = [...dockerfile.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gm)].map((m) => m[1] ?? '');
  const runStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));

  it('builds on Node 24 and runs on a distroless Node 24 image as a numeric non-root user', () => {
    expect(/^ARG NODE_VERSION=24$/m.test(dockerfile)).toBe(true);
    expect(froms[0]).toBe('node:${NODE_VERSION}-bookworm-slim');
    expect(froms.at(-1)).toMatch(
      /^gcr\.io\/distroless\/nodejs\$\{NODE_VERSION\}-debian12:nonroot$/,
    );
    expect(runStage).toMatch(/^USER [1-9][0-9]*:[1-9][0-9]*$/m);
    expect(runStage).not.toMatch(/^RUN /m); // nothing to run it with: no shell
  });

  it('is the Node major npm test runs the tests on a second time (scripts/node24.sh)', () => {
    const major = /^ARG NODE_VERSION=(\d+)$/m.exec(dockerfile)?.[1];
    const script = read('scripts/node24.sh');
    expect(script).toContain(`"node-linux-$arch@${major}"`);
    expect(script).toContain(`grep -q '^v${major}\\.'`);
    expect(read('scripts/test.sh')).toMatch(/node24="\$\(sh scripts\/node24\.sh\)"/);
  });

  it('ships production dependencies, dist/ (with the Lua scripts) and exposes both ports', () => {
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    expect(read('scripts/copy-lua.mjs')).toMatch(/\.lua/);
    expect(runStage).toMatch(/COPY --from=build \/app\/dist \.\/dist/);
    const defaults = readmeDefaults();
    expect(runStage).toContain(`EXPOSE ${defaults.get('PORT')} ${defaults.get('METRICS_PORT')}`);
    expect(runStage).toMatch(/^CMD \[(?:"--[a-z-]+=\d+", )*"dist\/main\.js"\]$/m);
  });

  it('starts node with the flags `npm start` uses (the benchmark runs the gateway with them too)', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(runStage)?.[1] ?? '[]';
    const start = (readJson('package.json') as { scripts: { start: string } }).scripts.start;
    expect(start).toMatch(/^node (--\S+ )*dist\/main\.js$/);
    expect(JSON.parse(cmd)).toEqual(start.split(' ').slice(1));
    expect(read('load/run.ts')).toContain('scripts.start');
  });

  it('keeps the build context to what the build stage copies', () => {
    const lines = read('.dockerignore')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(lines[0]).toBe('**');
    const allowed = lines.slice(1).map((l) => l.replace(/^!/, '').replace(/\/\*\*$/, ''));
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] ?? '').split(' '),
    );
    expect(allowed.sort()).toEqual(copied.sort());
  });
});

describe('Helm chart', () => {
  it('sets every config variable, with the README defaults, from values.env or the Secret', () => {
    const envNames = Object.keys(values.env);
    expect([...envNames, ...FROM_SECRET].sort()).toEqual([...CONFIG_VARIABLES].sort());
    const defaults = readmeDefaults();
    for (const [name, value] of Object.entries(values.env))
      expect([name, value]).toEqual([name, defaults.get(name)]);
    expect(() => parseConfig(values.env)).not.toThrow();
    const deployment = read(`${CHART}templates/deployment.yaml`);
    for (const name of FROM_SECRET) expect(deployment).toContain(`- name: ${name}`);
  });

  it('validates values.yaml against values.schema.json, which refuses unknown and bad settings', () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validate = ajv.compile(readJson(`${CHART}values.schema.json`) as object);
    expect(validate(values), JSON.stringify(validate.errors)).toBe(true);
    const withEnv = (env: Record<string, unknown>) => ({
      ...values,
      env: { ...values.env, ...env },
    });
    expect(validate(withEnv({ REDIS_SENTINEL: 'typo:26379' }))).toBe(false);
    expect(validate(withEnv({ PORT: 'eighty' }))).toBe(false);
    expect(validate(withEnv({ PORT: 8080, REDIS_TLS: true }))).toBe(true);
    expect(validate({ ...values, replicaCount: 0 })).toBe(false);
    expect(validate({ ...values, extraEnv: [{ name: 'REDIS_URL', value: 'x' }] })).toBe(false);
    expect(
      validate({
        ...values,
        extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=384' }],
      }),
    ).toBe(true);
    // rateLimitPolicies holds a policies file: what the schema lets through, the gateway parses.
    const policies = {
      shadow: false,
      policies: { login: { algorithm: 'fixed_window', limit: 5, windowMs: 60000 } },
      tenants: { acme: { public: { algorithm: 'unlimited' } } },
      quotas: { acme: 1000 },
      envoy: [
        {
          domain: 'edge',
          descriptors: [
            { key: 'remote_address', rate_limit: { unit: 'minute', requests_per_unit: 60 } },
          ],
        },
      ],
      envoyOptions: { edge: { leaseMs: 1000, failureMode: 'open', timeoutMs: 15 } },
    };
    expect(validate({ ...values, rateLimitPolicies: policies })).toBe(true);
    expect(() => parsePoliciesFile(JSON.stringify(policies), 'policies.json')).not.toThrow();
    // Mutual TLS on the RLS port is TLS first.
    expect(validate({ ...values, rlsTLS: { secretName: 'rls', clientCASecretName: 'ca' } })).toBe(
      true,
    );
    expect(validate({ ...values, rlsTLS: { secretName: '', clientCASecretName: 'ca' } })).toBe(
      false,
    );
    expect(validate({ ...values, rateLimitPolicies: { polices: {} } })).toBe(false);
    expect(validate({ ...values, rateLimitPolicies: { envoy: [{ descriptors: [] }] } })).toBe(
      false,
    );
    expect(
      validate({ ...values, rateLimitPolicies: { envoyOptions: { edge: { leaseMS: 1000 } } } }),
    ).toBe(false);
  });

  it('reads only values that values.yaml defines', () => {
    const dir = new URL(`${CHART}templates/`, root);
    const missing: string[] = [];
    for (const file of readdirSync(dir)) {
      const text = read(`${CHART}templates/${file}`);
      for (const m of text.matchAll(/\$?\.Values\.([A-Za-z0-9_.]+)/g)) {
        let node: unknown = values;
        for (const part of (m[1] ?? '').split('.')) {
          if (node === null || typeof node !== 'object' || !(part in node)) {
            missing.push(`${file}: .Values.${m[1]}`);
            break;
          }
          node = (node as Record<string, unknown>)[part];
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it('meets the restricted Pod Security Standard and outlasts the drain on shutdown', () => {
    const pod = values.podSecurityContext as Record<string, unknown>;
    const container = values.securityContext as Record<string, unknown>;
    expect(pod.runAsNonRoot).toBe(true);
    expect(pod.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(container).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    const grace = values.terminationGracePeriodSeconds as number;
    const preStop = values.preStopSleepSeconds as number;
    expect(grace * 1000).toBeGreaterThan(preStop * 1000 + Number(values.env.SHUTDOWN_GRACE_MS));
  });

  it('ships the same dashboard and alert rules as deploy/observability', () => {
    expect(read(`${CHART}files/grafana-dashboard.json`)).toBe(
      read('deploy/observability/grafana-dashboard.json'),
    );
    expect(read(`${CHART}files/prometheus-rules.yaml`)).toBe(
      read('deploy/observability/prometheus-rules.yaml'),
    );
  });

  it('has the chart version of the package', () => {
    const chart = readYaml(`${CHART}Chart.yaml`) as { appVersion: string; version: string };
    const pkg = readJson('package.json') as { version: string };
    expect(chart.appVersion).toBe(pkg.version);
  });
});

describe('observability assets', () => {
  it('gives every alert a severity, a summary and a runbook entry', () => {
    const runbook = read('docs/runbook.md');
    const rules = alertRules();
    expect(rules.length).toBeGreaterThanOrEqual(7);
    for (const rule of rules) {
      expect(rule.labels?.severity, rule.alert).toMatch(/^(critical|warning|info)$/);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.runbook, rule.alert).toBe(
        `docs/runbook.md#${rule.alert.toLowerCase()}`,
      );
      expect(runbook, rule.alert).toContain(`\n## ${rule.alert}\n`);
    }
  });

  it('uses only metrics of the gateway in the dashboard and rules (checked live in integration)', () => {
    expect(dashboardExprs().length).toBeGreaterThan(10);
    expect(usedMetricFamilies()).toContain('gateway_http_request_duration_seconds_bucket');
  });

  it('keeps the dashboard in step with its generator', async () => {
    const { execFileSync } = await import('node:child_process');
    const before = read('deploy/observability/grafana-dashboard.json');
    const out = execFileSync(process.execPath, ['scripts/dashboard.mjs', '--stdout'], {
      cwd: new URL('.', root),
      encoding: 'utf8',
    });
    expect(out).toBe(before);
  });
});
