/**
 * Rate-limit decisions. A check resolves its policy, picks the limiter for the identifier
 * (overrides), and runs the check script: one round trip, atomic, time passed from the gateway's
 * clock. Denials of unit cost are remembered in-process until they could be allowed again (as
 * envoy's ratelimit does), so a client hammering a closed limit costs no Redis call. A limiter
 * with `leaseMs` lets the check that goes to Redis reserve more units for this replica, which
 * then allows the identifier's next checks itself (leases.ts), so a busy identifier costs a Redis
 * call per lease, not per request. When Redis cannot answer within the policy's `timeoutMs`, the
 * policy's failure mode decides: `open` allows and flags the decision degraded, `closed` answers
 * 503; units on lease are still given out. Redis may still run the call later: what a check that
 * was answered 503 consumed then is refunded (`refundLate`), so a client refused while Redis was
 * slow is not also counted for it; a check allowed degraded stays counted, as it was served.
 *
 * Single checks that arrive in the same event-loop turn are sent as one call of the same script
 * (up to `batchMax` of them, each consuming on its own, in arrival order): under load one script
 * call and one reply carry many decisions, which saves the per-command cost on both sides. Each
 * check keeps its own timeout and failure mode: a call Redis could not answer fails every check
 * in it, each then decided by its policy's failure mode; a script error sends each check again
 * on its own, so only the faulty one fails.
 *
 * While the process is overloaded (http/overload.ts) a decision does not go to Redis: the policy's
 * failure mode decides, as when Redis cannot answer (remembered denials still answer), so an
 * overloaded gateway keeps answering its API-gateway hooks within their budget.
 */
import type { Clock } from '../../clock.js';
import { AppError, classifyRedisError, type RedisErrorKind } from '../../errors.js';
import type { RedisAccess } from '../../redis/client.js';
import { keys } from '../../redis/keys.js';
import { type Ask, type Grant, type Lease, createLeaseTable } from './leases.js';
import type { Limiter, Policy } from './policy.js';

/** Most checks in one `_check` call. */
export const MAX_CHECKS = 20;
/** Integers the check script returns per check. */
const PER_CHECK = 8;

/** The lease fields of one check's script result. */
const grantOf = (r: number[]): Grant => ({
  units: r[5] as number,
  leaseMs: r[6] as number,
  origin: r[7] as number,
  remaining: r[2] as number,
  resetMs: r[3] as number,
});

export interface CheckInput {
  policy: Policy;
  identifier: string;
  cost: number;
}

export type DecisionOutcome =
  'allowed' | 'denied' | 'shadow_denied' | 'degraded_allowed' | 'degraded_denied';

export interface Decision {
  allowed: boolean;
  /** null for an unlimited policy. */
  limit: number | null;
  remaining: number | null;
  resetMs: number;
  retryAfterMs: number;
  policy: string;
  /** The policy name as a Structured Field string (headers). */
  sfName: string;
  /**
   * Redis did not answer in time and the policy fails open: allowed, and not counted unless the
   * call had reached Redis (one not yet sent is dropped).
   */
  degraded?: true;
  /** A shadow policy that would have denied this request. */
  shadowDenied?: true;
  /** For the headers. */
  limiter: Limiter;
}

export interface RatelimitServiceOptions {
  redis: RedisAccess;
  clock: Clock;
  /** Entries of the in-process denial cache; 0 disables it. */
  localDenyEntries: number;
  /** Identifiers this replica may hold leases for; 0 turns leases off (every check asks Redis). */
  leaseEntries: number;
  /** Most single checks sent in one script call; 1 sends each on its own. */
  batchMax: number;
  /** True while the process sheds load: decisions follow the failure mode without Redis. */
  overloaded?(): boolean;
  /** True while every policy is in shadow mode (the policies file's `shadow: true`). */
  shadowAll?(): boolean;
  onDecision?(policy: Policy, outcome: DecisionOutcome): void;
  /** A denial answered from the in-process cache. */
  onLocalDenial?(): void;
  /**
   * Units reserved by a lease (`granted`), given out from one without Redis (`used`), or of a
   * lease sent back unused (`returned`).
   */
  onLease?(event: 'granted' | 'used' | 'returned', units: number): void;
  /** Units sent back to Redis for checks answered 503 that Redis ran after all (`refundLate`). */
  onRefund?(units: number): void;
  /** `checks` single checks went to Redis in one script call. */
  onBatch?(checks: number): void;
  onRedisError?(kind: RedisErrorKind): void;
  /** An identifier's state was reset; `cleared`: there was stored state to delete. */
  onReset?(policy: Policy, cleared: boolean): void;
}

interface Denied {
  until: number;
  resetAt: number;
}

/** A single check waiting for the end of the event-loop turn, then for its script call. */
interface Queued {
  key: string;
  args: (string | number)[];
  /** performance.now() when the caller stops waiting: its policy's timeoutMs after it began. */
  deadline: number;
  settled: boolean;
  resolve(r: number[]): void;
  reject(err: unknown): void;
  /** The answer, when it came after the check had stopped waiting (see `runOne`). */
  late: ((r: number[]) => void) | undefined;
}

/**
 * The checks of one script call, and one timer for all their deadlines (a timer per check cost
 * more than the rest of the batching saved): it fires at the earliest open deadline, fails the
 * checks that have reached theirs, and waits for the next.
 */
class Batch {
  private open: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly checks: Queued[]) {
    this.open = checks.length;
    this.arm();
  }

  resolve(q: Queued, r: number[]): void {
    if (this.settle(q)) q.resolve(r);
    else q.late?.(r);
  }

  reject(q: Queued, err: unknown): void {
    if (this.settle(q)) q.reject(err);
  }

  private settle(q: Queued): boolean {
    if (q.settled) return false;
    q.settled = true;
    if (--this.open === 0) clearTimeout(this.timer);
    return true;
  }

  private arm(): void {
    let next = Infinity;
    for (const q of this.checks) if (!q.settled && q.deadline < next) next = q.deadline;
    if (next === Infinity) return;
    this.timer = setTimeout(
      () => {
        // Timers round to whole ms: anything due within the next ms is due now.
        const now = performance.now() + 1;
        for (const q of this.checks) if (!q.settled && q.deadline <= now) this.reject(q, TIMEOUT);
        this.arm();
      },
      Math.max(0, next - performance.now()),
    );
  }
}

const TIMEOUT = new Error('rate-limit decision timed out');
const NO_LEASE: Ask = { want: 0, back: 0, backOrigin: 0 };
/**
 * Not sent to Redis: every check of the call had been answered (by its failure mode) before the
 * call could be sent. Nothing counts them, as nothing counted them when they were answered.
 */
const ABANDONED = new Error('rate-limit call not sent: its checks had all timed out');
/** Not sent to Redis: the process is overloaded. */
const OVERLOADED = new Error('rate-limit decision shed: the gateway is overloaded');

/**
 * A Redis call for a caller that stops waiting after `ms` (TIMEOUT); `late` gets what it resolves
 * to after that. `run` is told when the caller has stopped waiting, so that a call not yet sent
 * (waiting for a master, or to be sent again after a refusal) is not sent at all.
 */
function withTimeout<T>(
  run: (abandoned: () => boolean) => Promise<T>,
  ms: number,
  late?: (v: T) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(TIMEOUT);
    }, ms);
    run(() => timedOut).then(
      (v) => {
        clearTimeout(timer);
        if (timedOut) late?.(v);
        else resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- rethrown as is
        reject(err);
      },
    );
  });
}

/** Errors that mean "Redis could not decide now" (the failure mode applies); others are bugs. */
function unavailableKind(err: unknown): RedisErrorKind | undefined {
  // Shed while overloaded: not a Redis error, but decided the same way (the failure mode).
  if (err === TIMEOUT || err === OVERLOADED || err === ABANDONED) return 'timeout';
  if (err instanceof AppError) {
    return err.code.startsWith('BACKEND_') ? 'unavailable' : undefined;
  }
  const kind = classifyRedisError(err);
  return kind === null || kind === 'other' || kind === 'noperm' ? undefined : kind;
}

export function createRatelimitService(opts: RatelimitServiceOptions) {
  const { redis, clock } = opts;
  const denied = new Map<string, Denied>();
  const leases = createLeaseTable(opts.leaseEntries);
  /** Whether a policy's denials are only recorded: its own `shadow`, or every policy's. */
  const shadowOf = (policy: Policy): boolean =>
    policy.shadow || (opts.shadowAll !== undefined && opts.shadowAll());
  let queued: Queued[] = [];
  /** Counts master changes (`forgetLeases`): a refund goes only to the master that counted. */
  let master = 0;

  /** Sends the checks queued in this turn, `batchMax` per script call. */
  function flush(): void {
    const all = queued;
    queued = [];
    const now = clock.nowMs();
    for (let from = 0; from < all.length; from += opts.batchMax) {
      const part = all.slice(from, from + opts.batchMax);
      const batch = new Batch(part);
      opts.onBatch?.(part.length);
      /** The checks of the last attempt (onMaster runs its function again after a refusal). */
      let sent = part;
      redis
        .onMaster((c) => {
          // Checks answered by their failure mode before this call could be sent (waiting for a
          // master, or again after a refusal) stay out of it: nothing counts them.
          sent = part.some((q) => q.settled) ? part.filter((q) => !q.settled) : part;
          if (sent.length === 0) return Promise.reject(ABANDONED);
          const keyArgs: string[] = [];
          const args: (string | number)[] = [];
          for (const q of sent) {
            keyArgs.push(q.key);
            for (const a of q.args) args.push(a);
          }
          return c.ratelimitCheck(sent.length, ...keyArgs, now, 0, ...args);
        })
        .then(
          (r) =>
            sent.forEach((q, j) => batch.resolve(q, r.slice(j * PER_CHECK, (j + 1) * PER_CHECK))),
          (err: unknown) => {
            if (sent.length === 1 || unavailableKind(err) !== undefined) {
              part.forEach((q) => batch.reject(q, err));
              return;
            }
            // A script error (say, a key of the wrong type) came from one check; the script reads
            // every key before it writes any, so nothing was applied: each check goes again alone
            // and only the faulty one fails.
            for (const q of sent) {
              if (q.settled) continue;
              redis
                .onMaster((c) =>
                  q.settled
                    ? Promise.reject(ABANDONED)
                    : c.ratelimitCheck(1, q.key, now, 1, ...q.args),
                )
                .then(
                  (r) => batch.resolve(q, r),
                  (e: unknown) => batch.reject(q, e),
                );
            }
          },
        );
    }
  }

  /**
   * One check's script result, alone or with the other checks of this turn; rejected with TIMEOUT
   * when Redis has not answered within `timeoutMs`. Redis may still answer after that: `late`
   * then gets the result (what the script did, it did).
   */
  function runOne(
    key: string,
    now: number,
    args: (string | number)[],
    timeoutMs: number,
    late?: (r: number[]) => void,
  ): Promise<number[]> {
    if (opts.batchMax <= 1) {
      opts.onBatch?.(1);
      return withTimeout(
        (abandoned) =>
          redis.onMaster((c) =>
            abandoned() ? Promise.reject(ABANDONED) : c.ratelimitCheck(1, key, now, 1, ...args),
          ),
        timeoutMs,
        late,
      );
    }
    const deadline = performance.now() + timeoutMs;
    return new Promise<number[]>((resolve, reject) => {
      if (queued.length === 0) redis.atEndOfTurn(flush);
      queued.push({ key, args, deadline, settled: false, resolve, reject, late });
    });
  }

  const record = (policy: Policy, outcome: DecisionOutcome) => opts.onDecision?.(policy, outcome);

  function unlimited(policy: Policy, limiter: Limiter): Decision {
    record(policy, 'allowed');
    return {
      allowed: true,
      limit: null,
      remaining: null,
      resetMs: 0,
      retryAfterMs: 0,
      policy: policy.name,
      sfName: policy.sfName,
      limiter,
    };
  }

  function checkCost(policy: Policy, limiter: Limiter, cost: number, field: string): void {
    if (cost > limiter.quota) {
      throw new AppError(
        'VALIDATION_FAILED',
        `${field} ${cost} exceeds what policy "${policy.name}" can ever allow (${limiter.quota}).`,
        { errors: [{ field, message: `must be at most ${limiter.quota} for this policy` }] },
      );
    }
  }

  function remember(key: string, d: Decision, now: number): void {
    if (opts.localDenyEntries === 0) return;
    if (denied.size >= opts.localDenyEntries) {
      // Drop the oldest entry (Map keeps insertion order).
      const oldest = denied.keys().next().value;
      if (oldest !== undefined) denied.delete(oldest);
    }
    denied.set(key, { until: now + d.retryAfterMs, resetAt: now + d.resetMs });
  }

  /** Turns the script's 5 integers into a decision, applying shadow mode. */
  function decision(policy: Policy, limiter: Limiter, r: number[], i: number): Decision {
    const allowed = r[i] === 1;
    const d: Decision = {
      allowed,
      limit: r[i + 1] as number,
      remaining: r[i + 2] as number,
      resetMs: r[i + 3] as number,
      retryAfterMs: r[i + 4] as number,
      policy: policy.name,
      sfName: policy.sfName,
      limiter,
    };
    if (!allowed && shadowOf(policy)) {
      d.allowed = true;
      d.shadowDenied = true;
      d.retryAfterMs = 0;
      record(policy, 'shadow_denied');
    } else {
      record(policy, allowed ? 'allowed' : 'denied');
    }
    return d;
  }

  /** A check allowed from this replica's lease: no Redis call. */
  function fromLease(
    policy: Policy,
    limiter: Limiter,
    held: Lease,
    cost: number,
    now: number,
  ): Decision {
    opts.onLease?.('used', cost);
    record(policy, 'allowed');
    return {
      allowed: true,
      limit: limiter.quota,
      // What Redis had left at the grant, and what this replica still holds.
      remaining: held.remaining + held.units,
      resetMs: Math.max(0, held.resetAt - now),
      retryAfterMs: 0,
      policy: policy.name,
      sfName: policy.sfName,
      limiter,
    };
  }

  /**
   * Hands the script's lease fields (the 6th to 8th integers) to the lease that asked. The
   * answer then says what Redis has left plus what this replica now holds, as the answers given
   * from the lease will.
   */
  function granted(lease: Lease, now: number, r: number[], d: Decision): void {
    const units = r[5] as number;
    leases.granted(lease, now, grantOf(r));
    if (units > 0) {
      opts.onLease?.('granted', units);
      // A lease retired while its grant was on its way gives out none of it.
      if (d.remaining !== null && !lease.ended) d.remaining += units;
    }
  }

  /**
   * The answer of a check that asked for a lease and timed out came after all. Its check was
   * answered by its failure mode, but Redis counted what the script did: the cost, and units
   * granted. Those units are this replica's to give out (until the lease's end as Redis counted
   * it), or, for a window, to give back with the next check. Dropped, they cost a whole lease of
   * the limit: 31 of 500 units in the master-crash test, in 3 of its 18 runs before this.
   */
  function lateGrant(lease: Lease, ticket: number, now: number, r: number[]): void {
    const units = r[5] as number;
    if (units === 0) return;
    opts.onLease?.('granted', units);
    leases.late(lease, ticket, now, grantOf(r));
  }

  /**
   * The answer of a check whose policy fails closed came after the check was answered 503, and
   * says it consumed `cost`: Redis counted units the caller was refused. They are sent back as a
   * refund (check-n.lua), which uncounts them as far as a state that never saw the check would
   * have that room (for a slow limit, nearly all; the algorithms' headers say how much). The
   * script's 8th integer names what counted them (`i`: where this check's 8 integers start).
   */
  function refundLate(
    key: string,
    limiter: Limiter,
    cost: number,
    sentTo: number,
    r: number[],
    i = 0,
  ): void {
    const origin = r[i + 7] as number;
    if (r[i] !== 1 || origin === 0) return;
    const args = [...limiter.args, -1, 0, 0, 0, cost, origin];
    // Only to the master that counted them: a new one may never have received that count. A
    // refund that fails (or finds another master) leaves the units counted.
    redis
      .onMaster((c) =>
        master !== sentTo
          ? Promise.reject(ABANDONED)
          : c.ratelimitCheck(1, key, clock.nowMs(), 0, ...args),
      )
      .then(
        () => opts.onRefund?.(cost),
        () => undefined,
      );
  }

  function degraded(policy: Policy, limiter: Limiter, err: unknown): Decision {
    const kind = unavailableKind(err);
    if (kind === undefined) throw err;
    if (err !== OVERLOADED) opts.onRedisError?.(kind);
    if (policy.failureMode === 'closed') {
      record(policy, 'degraded_denied');
      if (err === OVERLOADED) {
        throw new AppError(
          'OVERLOADED',
          `This gateway replica is overloaded and policy "${policy.name}" fails closed; retry shortly.`,
          { retryAfter: 1 },
        );
      }
      throw new AppError(
        'BACKEND_UNAVAILABLE',
        `Redis could not decide within ${policy.timeoutMs} ms and policy "${policy.name}" fails closed.`,
        { retryAfter: 1 },
      );
    }
    record(policy, 'degraded_allowed');
    return {
      allowed: true,
      limit: limiter.quota,
      remaining: limiter.quota,
      resetMs: 0,
      retryAfterMs: 0,
      policy: policy.name,
      sfName: policy.sfName,
      degraded: true,
      limiter,
    };
  }

  return {
    shadowOf,

    /** One check. */
    check(tenant: string, input: CheckInput): Decision | Promise<Decision> {
      const { policy, identifier, cost } = input;
      const limiter = policy.limiterFor(identifier);
      if (limiter.code === undefined) return unlimited(policy, limiter);
      checkCost(policy, limiter, cost, 'body.cost');
      const key = keys.ratelimit(tenant, policy.stateName, limiter.code, identifier);
      const now = clock.nowMs();
      if (limiter.leaseMs > 0 && cost > 0) {
        const held = leases.take(key, cost, now);
        if (held !== undefined) return fromLease(policy, limiter, held, cost, now);
      }
      // Only unit-cost checks use the remembered denials: a larger cost needs longer to fit.
      if (cost === 1 && !shadowOf(policy)) {
        const known = denied.get(key);
        if (known !== undefined) {
          if (now < known.until) {
            opts.onLocalDenial?.();
            record(policy, 'denied');
            return {
              allowed: false,
              limit: limiter.quota,
              remaining: 0,
              resetMs: Math.max(0, known.resetAt - now),
              retryAfterMs: known.until - now,
              policy: policy.name,
              sfName: policy.sfName,
              limiter,
            };
          }
          denied.delete(key);
        }
      }
      if (opts.overloaded?.()) return degraded(policy, limiter, OVERLOADED);
      const { want, lease, ticket, back, backOrigin } =
        limiter.leaseMs > 0 && cost > 0
          ? leases.ask(key, now, limiter.leaseMs, limiter.leaseMax)
          : NO_LEASE;
      if (back > 0) opts.onLease?.('returned', back);
      const sentTo = master;
      const call = runOne(
        key,
        now,
        [...limiter.args, cost, shadowOf(policy) ? 1 : 0, want, limiter.leaseMs, back, backOrigin],
        policy.timeoutMs,
        lease !== undefined
          ? (r) => lateGrant(lease, ticket ?? 0, now, r)
          : policy.failureMode === 'closed' && cost > 0
            ? (r) => refundLate(key, limiter, cost, sentTo, r)
            : undefined,
      );
      return call.then(
        (r) => {
          const d = decision(policy, limiter, r, 0);
          if (lease !== undefined) granted(lease, now, r, d);
          // Only a unit-cost denial says when any request will next be allowed.
          if (!d.allowed && cost === 1) remember(key, d, now);
          return d;
        },
        (err: unknown) => {
          if (lease !== undefined) leases.failed(lease);
          return degraded(policy, limiter, err);
        },
      );
    },

    /**
     * Several checks in one round trip. With `atomic`, nothing is consumed unless every check
     * allows; without it, each allowed check consumes on its own.
     */
    async checkMany(tenant: string, inputs: CheckInput[], atomic: boolean): Promise<Decision[]> {
      const out = new Array<Decision | undefined>(inputs.length);
      const keyArgs: string[] = [];
      const args: (string | number)[] = [];
      const limited: { index: number; policy: Policy; limiter: Limiter; cost: number }[] = [];
      inputs.forEach(({ policy, identifier, cost }, index) => {
        const limiter = policy.limiterFor(identifier);
        if (limiter.code === undefined) {
          out[index] = unlimited(policy, limiter);
          return;
        }
        checkCost(policy, limiter, cost, `body.checks[${index}].cost`);
        keyArgs.push(keys.ratelimit(tenant, policy.stateName, limiter.code, identifier));
        args.push(...limiter.args, cost, shadowOf(policy) ? 1 : 0, 0, 0, 0, 0);
        limited.push({ index, policy, limiter, cost });
      });
      if (limited.length > 0) {
        const now = clock.nowMs();
        const timeoutMs = Math.min(...limited.map((l) => l.policy.timeoutMs));
        // A closed policy makes a call that timed out a 503: what Redis counted later goes back.
        const sentTo = master;
        const late = limited.some((l) => l.policy.failureMode === 'closed')
          ? (r: number[]) =>
              limited.forEach((l, j) =>
                refundLate(keyArgs[j] as string, l.limiter, l.cost, sentTo, r, j * PER_CHECK),
              )
          : undefined;
        try {
          if (opts.overloaded?.()) throw OVERLOADED;
          const r = await withTimeout(
            (abandoned) =>
              redis.onMaster((c) =>
                abandoned()
                  ? Promise.reject(ABANDONED)
                  : c.ratelimitCheck(keyArgs.length, ...keyArgs, now, atomic ? 1 : 0, ...args),
              ),
            timeoutMs,
            late,
          );
          limited.forEach((l, j) => {
            out[l.index] = decision(l.policy, l.limiter, r, j * PER_CHECK);
          });
        } catch (err) {
          // Any closed policy makes the whole call a 503; otherwise every check is degraded.
          const closed = limited.find((l) => l.policy.failureMode === 'closed');
          if (closed !== undefined) degraded(closed.policy, closed.limiter, err);
          for (const l of limited) out[l.index] = degraded(l.policy, l.limiter, err);
        }
      }
      return out as Decision[];
    },

    /**
     * Deletes the state of `identifier` under `policy` (its limit starts afresh) and tells every
     * replica to forget a remembered denial and a lease of it (Redis no longer counts the leased
     * units). False when there was no state (nothing used, expired, or an unlimited policy).
     */
    async reset(tenant: string, policy: Policy, identifier: string): Promise<boolean> {
      const limiter = policy.limiterFor(identifier);
      if (limiter.code === undefined) {
        opts.onReset?.(policy, false);
        return false;
      }
      const key = keys.ratelimit(tenant, policy.stateName, limiter.code, identifier);
      denied.delete(key);
      leases.forget(key);
      const replies = await redis.onMaster((c) =>
        c.multi().del(key).publish(keys.channels.ratelimitReset(), key).exec(),
      );
      const [err, deleted] = replies?.[0] ?? [new Error('the transaction was discarded'), 0];
      if (err) throw err;
      opts.onReset?.(policy, deleted === 1);
      return deleted === 1;
    },

    /** Another replica reset this state key: a remembered denial or lease of it no longer holds. */
    forgetKey(key: string): void {
      denied.delete(key);
      leases.forget(key);
    },

    /**
     * Forgets remembered denials and ends leases (policies changed, or pub/sub reconnected and
     * changes may have been missed: they may be of an old limit): a tenant's, or every tenant's.
     * An ended lease gives out nothing more, and its units left go back with the identifier's
     * next check, as for a lease that ran its time.
     */
    clearLocal(tenant?: string): void {
      if (tenant === undefined) {
        denied.clear();
        leases.retire();
        return;
      }
      const prefix = keys.ratelimitPrefix(tenant);
      for (const key of denied.keys()) if (key.startsWith(prefix)) denied.delete(key);
      leases.retire(prefix);
    },

    /**
     * Forgets every lease (the master changed: the new one may not have their grants, whose
     * replication is asynchronous), and sends no refund for a check sent before (the new master
     * may not have its count either). Remembered denials stay: they only deny until their retry.
     */
    forgetLeases(): void {
      master++;
      leases.clear();
    },

    /** Entries of the in-process denial cache (for tests and metrics). */
    localSize(): number {
      return denied.size;
    },

    /** Units this replica holds on lease for a state key (for tests). */
    leasedUnits(key: string): number {
      return leases.held(key, clock.nowMs());
    },
  };
}

export type RatelimitService = ReturnType<typeof createRatelimitService>;
