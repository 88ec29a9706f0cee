/** Request and response schemas of the queue routes. */
import { z } from 'zod';
import { queryInteger } from '../../http/query.js';
import { MAX_KEY_BYTES, checkUserKey } from '../../redis/keys.js';
import { VISIBILITY_CEILING_MS } from './service.js';

export const MAX_BATCH = 100;
export const MAX_RECEIVE = 100;
export const MAX_WAIT_MS = 20_000;

const NAME = /^[A-Za-z0-9._-]{1,128}$/;
const nameOf = (what: string) =>
  z
    .string()
    .regex(NAME, 'must be 1..128 of A-Z a-z 0-9 . _ -')
    .describe(`${what}: 1..128 of A-Z a-z 0-9 . _ -`);

export const QueueName = nameOf('A queue name (its dead-letter queue is `<name>.dlq`)');
const GroupName = nameOf('A consumer group name');
const ConsumerName = nameOf(
  'The consumer (one worker) receiving; it owns what it receives until the visibility timeout',
);

const MessageId = z
  .string()
  .regex(/^\d{1,20}-\d{1,20}$/, 'must be a message id such as 1763800000000-0')
  .describe('A message id as returned by publish or receive.');
const Ids = z.array(MessageId).min(1).max(MAX_RECEIVE);

const AnyJson = z
  .unknown()
  .refine((v) => v !== undefined, { message: 'is required' })
  .describe('The message: any JSON value.');

const Publish = z.strictObject({
  data: AnyJson,
  dedupId: z
    .string()
    .min(1)
    .max(MAX_KEY_BYTES)
    .superRefine((k, ctx) => {
      const problem = checkUserKey(k);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional()
    .describe(
      'A second publish with the same dedupId within QUEUE_DEDUP_WINDOW_SECONDS adds nothing and answers with the first id (ids seen before a purge or delete of the queue do not count).',
    ),
  delayMs: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe('Receivable only after this many ms (at most QUEUE_MAX_DELAY_SECONDS).'),
});

export const NameParams = z.object({ name: QueueName });
export const GroupParams = z.object({ name: QueueName, group: GroupName });

export const PublishBody = Publish.extend({
  durable: z
    .boolean()
    .optional()
    .describe(
      'Answer only once DURABLE_REPLICAS replica(s) confirm the message (WAIT), so it survives a master crash; 503 when they do not in time.',
    ),
}).meta({
  id: 'QueuePublish',
  examples: [{ data: { orderId: 42, action: 'recalculate' }, dedupId: 'order-42-v7' }],
});

export const Published = z
  .object({
    id: z
      .string()
      .describe(
        'The message id; `scheduled:<token>` for a delayed message (its stream id is given when it becomes receivable).',
      ),
    duplicate: z
      .boolean()
      .optional()
      .describe('true when the dedupId had been seen: nothing was added.'),
  })
  .meta({ id: 'QueuePublished', examples: [{ id: '1763800000000-0' }] });

export const BatchBody = z
  .strictObject({
    messages: z.array(Publish).min(1).max(MAX_BATCH),
    durable: z
      .boolean()
      .optional()
      .describe('As for a single publish; one WAIT for the whole batch.'),
  })
  .meta({
    id: 'QueuePublishBatch',
    examples: [{ messages: [{ data: { n: 1 } }, { data: { n: 2 }, delayMs: 5000 }] }],
  });

export const BatchPublished = z
  .object({ messages: z.array(Published).describe('In request order.') })
  .meta({
    id: 'QueueBatchPublished',
    examples: [{ messages: [{ id: '1763800000000-0' }, { id: 'scheduled:Qm9vdGgxMjM0' }] }],
  });

export const GroupBody = z
  .strictObject({
    startFrom: z
      .enum(['earliest', 'latest'])
      .optional()
      .describe(
        'earliest (default): every message still in the queue; latest: only messages published from now on.',
      ),
  })
  .meta({ id: 'QueueGroupCreate', examples: [{ startFrom: 'earliest' }] });

export const GroupCreated = z
  .object({ group: z.string(), created: z.boolean().describe('false when it already existed.') })
  .meta({ id: 'QueueGroup', examples: [{ group: 'workers', created: true }] });

export const ReceiveBody = z
  .strictObject({
    consumer: ConsumerName,
    max: z
      .number()
      .int()
      .min(1)
      .max(MAX_RECEIVE)
      .optional()
      .describe(`Most messages (1..${MAX_RECEIVE}, default 1).`),
    waitMs: z
      .number()
      .int()
      .min(0)
      .max(MAX_WAIT_MS)
      .optional()
      .describe(
        `Long polling: wait up to this long for a message (0..${MAX_WAIT_MS}, default 0); answered as soon as one arrives.`,
      ),
    visibilityTimeoutMs: z
      .number()
      .int()
      .min(1)
      .max(VISIBILITY_CEILING_MS)
      .optional()
      .describe(
        'How long the received messages stay hidden from other consumers unless acked (default 30000, at most 12 h).',
      ),
  })
  .meta({
    id: 'QueueReceive',
    examples: [{ consumer: 'worker-1', max: 10, waitMs: 20000, visibilityTimeoutMs: 30000 }],
  });

export const Received = z
  .object({
    messages: z.array(
      z.object({
        id: MessageId,
        data: AnyJson,
        receiveCount: z
          .number()
          .int()
          .describe('1 on first delivery; more after visibility timeouts or nacks.'),
        enqueuedAt: z.string().describe('ISO 8601: when it was published.'),
      }),
    ),
  })
  .meta({
    id: 'QueueReceived',
    examples: [
      {
        messages: [
          {
            id: '1763800000000-0',
            data: { orderId: 42, action: 'recalculate' },
            receiveCount: 1,
            enqueuedAt: '2026-11-22T10:00:00.000Z',
          },
        ],
      },
    ],
  });

export const AckBody = z
  .strictObject({ ids: Ids })
  .meta({ id: 'QueueAck', examples: [{ ids: ['1763800000000-0'] }] });
export const AckResult = z
  .object({
    acked: z
      .number()
      .int()
      .describe('Messages acknowledged now (ids not in flight are not counted).'),
  })
  .meta({ id: 'QueueAcked', examples: [{ acked: 1 }] });

export const NackBody = z
  .strictObject({
    consumer: ConsumerName,
    ids: Ids,
    delayMs: z
      .number()
      .int()
      .min(0)
      .max(VISIBILITY_CEILING_MS)
      .optional()
      .describe('Receivable again after this many ms (default 0: at once).'),
  })
  .meta({
    id: 'QueueNack',
    examples: [{ consumer: 'worker-1', ids: ['1763800000000-0'], delayMs: 5000 }],
  });

export const ExtendBody = z
  .strictObject({
    consumer: ConsumerName,
    ids: Ids,
    visibilityTimeoutMs: z
      .number()
      .int()
      .min(1)
      .max(VISIBILITY_CEILING_MS)
      .describe('Hidden for this long from now.'),
  })
  .meta({
    id: 'QueueExtend',
    examples: [{ consumer: 'worker-1', ids: ['1763800000000-0'], visibilityTimeoutMs: 60000 }],
  });

export const LeaseResult = z
  .object({
    changed: z.number().int().describe('Messages this consumer still held and that were changed.'),
  })
  .meta({ id: 'QueueLeaseChanged', examples: [{ changed: 1 }] });

export const PageQuery = z.strictObject({
  cursor: MessageId.optional().describe('From the previous page; omit for the first.'),
  limit: queryInteger(1, 100).optional().describe('Entries per page, 1..100 (default 100).'),
});

export const SettingsBody = z
  .strictObject({
    maxReceiveCount: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .nullable()
      .optional()
      .describe(
        'Receives before a message is dead-lettered; null: back to QUEUE_MAX_RECEIVE_COUNT.',
      ),
    maxLength: z
      .number()
      .int()
      .min(100)
      .max(100_000_000)
      .nullable()
      .optional()
      .describe(
        'Stream length above which acknowledged history is trimmed; null: back to QUEUE_MAX_LENGTH.',
      ),
  })
  .meta({ id: 'QueueSettingsChange', examples: [{ maxReceiveCount: 10, maxLength: 1000000 }] });

export const Settings = z
  .object({
    name: z.string(),
    maxReceiveCount: z.number().int(),
    maxLength: z.number().int(),
  })
  .meta({
    id: 'QueueSettings',
    examples: [{ name: 'calc-jobs', maxReceiveCount: 10, maxLength: 1000000 }],
  });

export const QueueInfo = z
  .object({
    name: z.string(),
    maxReceiveCount: z.number().int().describe('Receives before a message is dead-lettered.'),
    maxLength: z.number().int().describe('Retention length (see PUT /v1/queues/{name}).'),
    length: z
      .number()
      .int()
      .describe('Entries in the stream (acknowledged history may remain until trimmed).'),
    delayed: z.number().int().describe('Messages waiting for their delay.'),
    deadLettered: z.number().int().describe('Messages in the dead-letter queue.'),
    oldestMessageAgeMs: z.number().int().nullable(),
    groups: z.array(
      z.object({
        name: z.string(),
        consumers: z.array(
          z.object({ name: z.string(), pending: z.number().int(), idleMs: z.number().int() }),
        ),
        pending: z.number().int().describe('Messages delivered and not yet acknowledged.'),
        lastDeliveredId: z.string(),
        lag: z
          .number()
          .int()
          .nullable()
          .describe('Messages not yet delivered to the group (null when Redis cannot tell).'),
      }),
    ),
  })
  .meta({
    id: 'QueueInfo',
    examples: [
      {
        name: 'calc-jobs',
        maxReceiveCount: 5,
        maxLength: 100000,
        length: 120,
        delayed: 3,
        deadLettered: 1,
        oldestMessageAgeMs: 5400,
        groups: [
          {
            name: 'workers',
            consumers: [{ name: 'worker-1', pending: 2, idleMs: 150 }],
            pending: 2,
            lastDeliveredId: '1763800000000-0',
            lag: 118,
          },
        ],
      },
    ],
  });

export const PendingList = z
  .object({
    entries: z.array(
      z.object({
        id: MessageId,
        consumer: z.string(),
        visibleInMs: z
          .number()
          .int()
          .describe('When the message becomes receivable again unless acked (0: now).'),
        receiveCount: z.number().int(),
      }),
    ),
    cursor: z.string().nullable(),
  })
  .meta({
    id: 'QueuePending',
    examples: [
      {
        entries: [
          { id: '1763800000000-0', consumer: 'worker-1', visibleInMs: 21000, receiveCount: 1 },
        ],
        cursor: null,
      },
    ],
  });

export const DeadLetters = z
  .object({
    messages: z.array(
      z.object({
        id: MessageId.describe('Its id in the dead-letter queue.'),
        data: AnyJson,
        enqueuedAt: z.string(),
        originalId: z.string(),
        group: z.string().describe('The group that could not process it.'),
        receiveCount: z.number().int(),
      }),
    ),
    cursor: z.string().nullable(),
  })
  .meta({
    id: 'QueueDeadLetters',
    examples: [
      {
        messages: [
          {
            id: '1763800009000-0',
            data: { orderId: 42 },
            enqueuedAt: '2026-11-22T10:00:00.000Z',
            originalId: '1763800000000-0',
            group: 'workers',
            receiveCount: 5,
          },
        ],
        cursor: null,
      },
    ],
  });

export const RedriveBody = z
  .strictObject({
    ids: Ids.optional().describe('Dead-letter ids to move back; omit to move the oldest 100.'),
  })
  .meta({ id: 'QueueRedrive', examples: [{}, { ids: ['1763800009000-0'] }] });

export const RedriveResult = z
  .object({
    redriven: z.number().int(),
    remaining: z.number().int().describe('Messages still in the dead-letter queue.'),
  })
  .meta({ id: 'QueueRedriven', examples: [{ redriven: 1, remaining: 0 }] });

export const ListQuery = z.strictObject({
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9._-]{0,128}$/, 'must be up to 128 of A-Z a-z 0-9 . _ -')
    .optional()
    .describe('Only queues whose names start with this text.'),
  cursor: z
    .string()
    .regex(/^\d{1,20}$/, 'must be a cursor returned by a previous listing')
    .optional()
    .describe('The cursor of the previous page; omit for the first.'),
  limit: queryInteger(1, 1000)
    .optional()
    .describe('About how many queues per page, 1..1000 (default 100).'),
});

export const QueueList = z
  .object({
    queues: z.array(
      z.object({
        name: z.string(),
        length: z
          .number()
          .int()
          .describe('Entries in the stream (acknowledged history may remain until trimmed).'),
      }),
    ),
    cursor: z
      .string()
      .nullable()
      .describe(
        'Null on the last page. A page may be short, or even empty, before that; a queue may appear twice.',
      ),
  })
  .meta({
    id: 'QueueList',
    examples: [
      {
        queues: [
          { name: 'calc-jobs', length: 120 },
          { name: 'calc-jobs.dlq', length: 1 },
        ],
        cursor: null,
      },
    ],
  });

export const Deleted = z
  .object({
    name: z.string(),
    messages: z
      .number()
      .int()
      .describe('Stream entries deleted (received or not; acknowledged history included).'),
    delayed: z.number().int().describe('Delayed messages deleted.'),
    groups: z.number().int().describe('Consumer groups deleted, with their in-flight messages.'),
    deadLettered: z.number().int().describe('Messages deleted from the dead-letter queue.'),
  })
  .meta({
    id: 'QueueDeleted',
    examples: [{ name: 'calc-jobs', messages: 120, delayed: 3, groups: 1, deadLettered: 1 }],
  });

export const Purged = z
  .object({
    name: z.string(),
    messages: z
      .number()
      .int()
      .describe('Stream entries dropped (received or not; acknowledged history included).'),
    delayed: z.number().int().describe('Delayed messages dropped.'),
    groups: z.number().int().describe('Consumer groups kept, now with nothing in flight.'),
  })
  .meta({
    id: 'QueuePurged',
    examples: [{ name: 'calc-jobs', messages: 120, delayed: 3, groups: 1 }],
  });
