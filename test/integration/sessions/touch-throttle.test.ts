/**
 * Opt-in touch throttling (SESSION_TOUCH_AFTER_SECONDS) against real Redis: a touch within the
 * window writes nothing (the hash is byte-for-byte the same and the touch is counted as
 * throttled), one after it slides as usual, the window never exceeds half a session's idle ttl
 * (so a session touched often enough never expires), and a merge with touch always writes.
 */
import { describe, expect, it } from 'vitest';
import { keys } from '../../../src/redis/keys.js';
import { type TestTenant, body, newTenant, useTestApp } from '../../harness/app.js';

const t = useTestApp({ env: { SESSION_TOUCH_AFTER_SECONDS: '2' } });
const SCOPES = ['session:read', 'session:write'];

type Session = {
  sessionId: string;
  createdAt: string;
  lastActivityAt: string;
  expiresAt: string;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function create(owner: TestTenant, ttl: number): Promise<Session> {
  const res = await t.app.inject({
    method: 'POST',
    url: '/v1/sessions',
    headers: owner.auth,
    payload: { userId: 'u1', data: { n: 1 }, ttl },
  });
  if (res.statusCode !== 201) throw new Error(`create: ${res.statusCode} ${res.body}`);
  return body<Session>(res);
}

async function touchByGet(owner: TestTenant, id: string): Promise<Session> {
  const res = await t.app.inject({
    method: 'GET',
    url: `/v1/sessions/${id}?touch=true`,
    headers: owner.auth,
  });
  expect(res.statusCode, res.body).toBe(200);
  return body<Session>(res);
}

async function touchByPost(owner: TestTenant, id: string): Promise<Session> {
  const res = await t.app.inject({
    method: 'POST',
    url: `/v1/sessions/${id}/_touch`,
    headers: owner.auth,
  });
  expect(res.statusCode, res.body).toBe(200);
  return body<Session>(res);
}

async function throttledCount(): Promise<number> {
  const text = await t.deps.metrics.registry.metrics();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('gateway_session_events_total{event="touch_throttled"}'));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('SESSION_TOUCH_AFTER_SECONDS', () => {
  it('a touch within the window writes nothing; one after it slides the expiry', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, 60);
    const key = keys.session(a.tenant, s.sessionId);
    const stored = await t.deps.redis.onMaster((r) => r.hgetall(key));
    const expiry = () => t.deps.redis.onMaster((r) => r.pexpiretime(key));
    expect(await expiry()).toBe(Date.parse(s.expiresAt));
    const before = await throttledCount();

    await sleep(20);
    const viaGet = await touchByGet(a, s.sessionId);
    const viaPost = await touchByPost(a, s.sessionId);
    for (const seen of [viaGet, viaPost]) {
      // Answered as stored: the last activity and expiry of the create.
      expect(seen.lastActivityAt).toBe(s.createdAt);
      expect(seen.expiresAt).toBe(s.expiresAt);
    }
    expect(await t.deps.redis.onMaster((r) => r.hgetall(key))).toEqual(stored);
    expect(await expiry()).toBe(Date.parse(s.expiresAt));
    expect((await throttledCount()) - before).toBe(2);

    await sleep(2100);
    const later = await touchByGet(a, s.sessionId);
    expect(Date.parse(later.lastActivityAt)).toBeGreaterThanOrEqual(Date.parse(s.createdAt) + 2000);
    expect(Date.parse(later.expiresAt)).toBe(Date.parse(later.lastActivityAt) + 60_000);
    // The slide wrote the key's expiry, which the last activity is derived from.
    expect(await expiry()).toBe(Date.parse(later.expiresAt));
    expect(await t.deps.redis.onMaster((r) => r.hgetall(key))).toEqual(stored);
    expect((await throttledCount()) - before).toBe(2);
  });

  it('never waits longer than half the idle ttl: a session touched often enough never expires', async () => {
    const a = await newTenant(t.deps, SCOPES);
    // Idle ttl 2 s: the 2 s window is cut to 1 s for this session.
    const s = await create(a, 2);
    const started = Date.now();
    let last = s;
    while (Date.now() - started < 4500) {
      await sleep(250);
      const sent = Date.now();
      last = await touchByGet(a, s.sessionId);
      // More than half the idle ttl is left after every touch, throttled or not.
      expect(Date.parse(last.expiresAt) - sent).toBeGreaterThan(1000);
    }
    // Alive well past its idle ttl, and its last activity kept moving.
    expect(Date.parse(last.lastActivityAt)).toBeGreaterThan(Date.parse(s.createdAt) + 3000);
  });

  it('a merge with touch always writes its slide', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, 60);
    await sleep(20);
    const res = await t.app.inject({
      method: 'PATCH',
      url: `/v1/sessions/${s.sessionId}`,
      headers: a.auth,
      payload: { data: { n: 2 }, touch: true },
    });
    expect(res.statusCode, res.body).toBe(200);
    const merged = body<Session>(res);
    expect(Date.parse(merged.lastActivityAt)).toBeGreaterThan(Date.parse(s.createdAt));
  });
});
