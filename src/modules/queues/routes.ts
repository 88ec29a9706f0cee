/**
 * HTTP surface of queues: /v1/queues (list), /v1/queues/{name} (info, settings, delete, _purge),
 * /messages (publish, _batch), /groups/{group} (create, delete, _receive, _ack, _nack, _extend,
 * pending), /dlq (list, _redrive). Received messages carry their stored JSON spliced into the
 * body, never re-encoded.
 *
 * Scopes, each with an optional queue-name glob (`queue:consume:calc-*`): `queue:publish`
 * (publish), `queue:consume` (receive, ack, nack, extend, pending, info), `queue:admin` (groups,
 * settings, dead-letter queue, redrive, listing, purge, deletion).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError } from '../../errors.js';
import { authorizePrefix, authorizeResource, principalOf } from '../../http/auth.js';
import { emptyResponse, jsonResponse, problemResponses } from '../../http/openapi.js';
import {
  AckBody,
  AckResult,
  BatchBody,
  BatchPublished,
  DeadLetters,
  Deleted,
  ExtendBody,
  GroupBody,
  GroupCreated,
  GroupParams,
  ListQuery,
  LeaseResult,
  NackBody,
  NameParams,
  PageQuery,
  PendingList,
  PublishBody,
  Purged,
  Published,
  QueueInfo,
  QueueList,
  ReceiveBody,
  Received,
  RedriveBody,
  RedriveResult,
  Settings,
  SettingsBody,
} from './schemas.js';
import type { QueueLimits, QueueService, ReceivedMessage } from './service.js';
import { isoTime as iso } from '../../clock.js';

export interface QueueRoutesOptions {
  service: QueueService;
  limits: QueueLimits;
}

const PUBLISH = 'queue:publish';
const CONSUME = 'queue:consume';
const ADMIN = 'queue:admin';
const TAGS = ['queues'];
const JSON_TYPE = 'application/json; charset=utf-8';
const LONG_POLL_HEADER = 'x-queue-long-poll';

function renderMessages(messages: readonly ReceivedMessage[]): string {
  let out = '{"messages":[';
  messages.forEach((m, i) => {
    out +=
      (i > 0 ? ',' : '') +
      `{"id":"${m.id}","data":${m.json},"receiveCount":${m.receiveCount},"enqueuedAt":"${iso(m.enqueuedAt)}"}`;
  });
  return out + ']}';
}

export const queueRoutes: FastifyPluginAsyncZod<QueueRoutesOptions> = async (
  app,
  { service, limits },
) => {
  const maxDelayMs = limits.maxDelaySeconds * 1000;

  /** The message's JSON, checked against the size and delay limits. */
  function encode(
    m: { data: unknown; dedupId?: string | undefined; delayMs?: number | undefined },
    field: string,
  ) {
    const json = JSON.stringify(m.data);
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > limits.maxMessageBytes) {
      throw new AppError(
        'VALUE_TOO_LARGE',
        `${field}.data is ${bytes} bytes of JSON; at most ${limits.maxMessageBytes} are allowed (QUEUE_MAX_MESSAGE_BYTES).`,
        {
          errors: [
            {
              field: `${field}.data`,
              message: `over ${limits.maxMessageBytes} bytes`,
              limit: 'QUEUE_MAX_MESSAGE_BYTES',
            },
          ],
        },
      );
    }
    if ((m.delayMs ?? 0) > maxDelayMs) {
      throw new AppError(
        'VALIDATION_FAILED',
        `${field}.delayMs must be at most ${maxDelayMs} (QUEUE_MAX_DELAY_SECONDS).`,
        {
          errors: [
            {
              field: `${field}.delayMs`,
              message: `must be at most ${maxDelayMs}`,
              limit: 'QUEUE_MAX_DELAY_SECONDS',
            },
          ],
        },
      );
    }
    return { json, dedupId: m.dedupId, delayMs: m.delayMs };
  }

  app.post(
    '/:name/messages',
    {
      config: { scope: PUBLISH, module: 'queues' },
      schema: {
        operationId: 'queuePublish',
        tags: TAGS,
        summary: 'Publish a message',
        description:
          'Appends a message (any JSON). `dedupId` drops a repeat within the dedup window (answering with the first id); `delayMs` makes it receivable later; `durable` waits for a replica.',
        params: NameParams,
        body: PublishBody,
        response: {
          201: jsonResponse('Published (or deduplicated).', Published),
          ...problemResponses(400, 401, 403, 413),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, PUBLISH, request.params.name, 'path.name');
      const [r] = await service.publish(
        principal.tenant,
        request.params.name,
        [encode(request.body, 'body')],
        request.body.durable === true,
      );
      // Rendered here, as the other hot answers are (no validating serializer on this path).
      const id = JSON.stringify(r?.id ?? '');
      return reply
        .code(201)
        .type(JSON_TYPE)
        .send(r?.duplicate ? `{"id":${id},"duplicate":true}` : `{"id":${id}}`);
    },
  );

  app.post(
    '/:name/messages/_batch',
    {
      config: { scope: PUBLISH, module: 'queues' },
      schema: {
        operationId: 'queuePublishBatch',
        tags: TAGS,
        summary: 'Publish up to 100 messages',
        description: 'Publishes every message in one atomic step; ids come back in request order.',
        params: NameParams,
        body: BatchBody,
        response: {
          201: jsonResponse('Published.', BatchPublished),
          ...problemResponses(400, 401, 403, 413),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, PUBLISH, request.params.name, 'path.name');
      const out = await service.publish(
        principal.tenant,
        request.params.name,
        request.body.messages.map((m, i) => encode(m, `body.messages[${i}]`)),
        request.body.durable === true,
      );
      reply.code(201);
      return {
        messages: out.map((r) => (r.duplicate ? { id: r.id, duplicate: true } : { id: r.id })),
      };
    },
  );

  app.get(
    '/:name',
    {
      config: { scope: CONSUME, module: 'queues' },
      schema: {
        operationId: 'queueInfo',
        tags: TAGS,
        summary: 'Queue depth, age and groups',
        params: NameParams,
        response: {
          200: jsonResponse('The queue.', QueueInfo),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, CONSUME, request.params.name, 'path.name');
      return service.info(principal.tenant, request.params.name);
    },
  );

  app.get(
    '/',
    {
      config: { scope: ADMIN, module: 'queues' },
      schema: {
        operationId: 'queueList',
        tags: TAGS,
        summary: 'List queues',
        description:
          "Pages the tenant's queues whose names start with `prefix`, with their lengths (SCAN: a page may be short or empty while the cursor is not null; a queue may appear twice). A queue is listed from its first publish (delayed or not) or its first group. Dead-letter queues appear as `<name>.dlq`. A key whose scope has a queue-name glob may list only under the glob's literal prefix.",
        querystring: ListQuery,
        response: {
          200: jsonResponse('A page of queues.', QueueList),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const prefix = request.query.prefix ?? '';
      authorizePrefix(principal, ADMIN, prefix, 'query.prefix');
      return service.list(
        principal.tenant,
        prefix,
        request.query.cursor,
        request.query.limit ?? 100,
      );
    },
  );

  app.delete(
    '/:name',
    {
      config: { scope: ADMIN, module: 'queues' },
      schema: {
        operationId: 'queueDelete',
        tags: TAGS,
        summary: 'Delete a queue',
        description:
          'Deletes the queue in one atomic step: its messages (received or not), consumer groups, delayed messages, settings and its dead-letter queue `<name>.dlq`. Consumers waiting on it get 404 GROUP_NOT_FOUND within 5 s; a later publish starts a new, empty queue, where no dedup id seen before counts as a duplicate. 404 when there was nothing to delete.',
        params: NameParams,
        response: {
          200: jsonResponse('Deleted; what was in it.', Deleted),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, ADMIN, request.params.name, 'path.name');
      const deleted = await service.deleteQueue(principal.tenant, request.params.name);
      request.log.info(
        { tenant: principal.tenant, apiKey: principal.keyId, ...deleted },
        'queue deleted',
      );
      return deleted;
    },
  );

  app.put(
    '/:name',
    {
      config: { scope: ADMIN, module: 'queues' },
      schema: {
        operationId: 'queueConfigure',
        tags: TAGS,
        summary: "Set a queue's own limits",
        description:
          'Per-queue `maxReceiveCount` and `maxLength` (retention), overriding QUEUE_MAX_RECEIVE_COUNT and QUEUE_MAX_LENGTH for this queue; `null` resets one. Fields left out are unchanged. Answers with the effective settings.',
        params: NameParams,
        body: SettingsBody,
        response: {
          200: jsonResponse('The effective settings.', Settings),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, ADMIN, request.params.name, 'path.name');
      const settings = await service.configure(principal.tenant, request.params.name, request.body);
      return { name: request.params.name, ...settings };
    },
  );

  app.post(
    '/:name/_purge',
    {
      config: { scope: ADMIN, module: 'queues' },
      schema: {
        operationId: 'queuePurge',
        tags: TAGS,
        summary: 'Drop every message of a queue',
        description:
          'In one atomic step, drops every message (received or not) and every delayed message. The consumer groups stay, positioned at the end with nothing in flight (acks of messages received before answer 0); settings and the dead-letter queue are kept; dedup ids seen before the purge no longer count as duplicates, so the same messages can be published again. 404 when the queue had neither messages nor groups.',
        params: NameParams,
        response: {
          200: jsonResponse('Purged; what was dropped.', Purged),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, ADMIN, request.params.name, 'path.name');
      const purged = await service.purge(principal.tenant, request.params.name);
      request.log.info(
        { tenant: principal.tenant, apiKey: principal.keyId, ...purged },
        'queue purged',
      );
      return purged;
    },
  );

  app.put(
    '/:name/groups/:group',
    {
      config: { scope: ADMIN, module: 'queues' },
      schema: {
        operationId: 'queueGroupCreate',
        tags: TAGS,
        summary: 'Create a consumer group',
        description:
          'Idempotent. Each group gets every message once; consumers of one group share its messages.',
        params: GroupParams,
        body: GroupBody,
        response: {
          201: jsonResponse('Created.', GroupCreated),
          200: jsonResponse('It already existed.', GroupCreated),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, ADMIN, request.params.name, 'path.name');
      const created = await service.createGroup(
        principal.tenant,
        request.params.name,
        request.params.group,
        request.body.startFrom ?? 'earliest',
      );
      reply.code(created ? 201 : 200);
      return { group: request.params.group, created };
    },
  );

  app.delete(
    '/:name/groups/:group',
    {
      config: { scope: ADMIN, module: 'queues' },
      schema: {
        operationId: 'queueGroupDelete',
        tags: TAGS,
        summary: 'Delete a consumer group',
        description:
          'Its in-flight messages are forgotten for this group (other groups keep theirs).',
        params: GroupParams,
        response: {
          204: emptyResponse('Deleted.'),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, ADMIN, request.params.name, 'path.name');
      await service.deleteGroup(principal.tenant, request.params.name, request.params.group);
      return reply.code(204).send();
    },
  );

  app.post(
    '/:name/groups/:group/_receive',
    {
      config: { scope: CONSUME, module: 'queues' },
      schema: {
        operationId: 'queueReceive',
        tags: TAGS,
        summary: 'Receive messages',
        description:
          'First messages whose visibility timeout passed (redelivered, receiveCount > 1; past QUEUE_MAX_RECEIVE_COUNT they go to the dead-letter queue instead), then new ones. With `waitMs`, waits until one arrives (long polling). `X-Queue-Long-Poll: degraded` means no long-poll connection was free and the answer did not wait.',
        params: GroupParams,
        body: ReceiveBody,
        response: {
          200: jsonResponse('Messages, possibly none.', Received, {
            'X-Queue-Long-Poll': {
              type: 'string',
              description:
                '`woken` or `timeout` after a wait; `degraded` when the wait was skipped because every long-poll connection was busy.',
            },
          }),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, CONSUME, request.params.name, 'path.name');
      const b = request.body;
      const r = await service.receive(principal.tenant, request.params.name, request.params.group, {
        consumer: b.consumer,
        max: b.max ?? 1,
        waitMs: b.waitMs ?? 0,
        visibilityTimeoutMs: b.visibilityTimeoutMs ?? 30_000,
      });
      if (r.longPoll !== undefined) reply.header(LONG_POLL_HEADER, r.longPoll);
      return reply.type(JSON_TYPE).send(renderMessages(r.messages));
    },
  );

  app.post(
    '/:name/groups/:group/_ack',
    {
      config: { scope: CONSUME, module: 'queues' },
      schema: {
        operationId: 'queueAck',
        tags: TAGS,
        summary: 'Acknowledge messages',
        description: 'Done: they are never delivered to this group again.',
        params: GroupParams,
        body: AckBody,
        response: {
          200: jsonResponse('Acknowledged.', AckResult),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, CONSUME, request.params.name, 'path.name');
      const acked = await service.ack(
        principal.tenant,
        request.params.name,
        request.params.group,
        request.body.ids,
      );
      return { acked };
    },
  );

  // _nack and _extend: both set when messages the consumer holds become visible again.
  for (const [action, operationId, summary, description, bodySchema] of [
    [
      '_nack',
      'queueNack',
      'Give messages back',
      'Makes messages this consumer holds receivable again, at once or after `delayMs`. Counts as a receive toward the dead-letter limit when redelivered.',
      NackBody,
    ],
    [
      '_extend',
      'queueExtend',
      'Extend the visibility timeout',
      'Keeps messages this consumer holds hidden for `visibilityTimeoutMs` from now (a heartbeat for long work).',
      ExtendBody,
    ],
  ] as const) {
    app.post(
      `/:name/groups/:group/${action}`,
      {
        config: { scope: CONSUME, module: 'queues' },
        schema: {
          operationId,
          tags: TAGS,
          summary,
          description,
          params: GroupParams,
          body: bodySchema,
          response: {
            200: jsonResponse('Changed.', LeaseResult),
            ...problemResponses(400, 401, 403, 404),
          },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        authorizeResource(principal, CONSUME, request.params.name, 'path.name');
        const b: {
          consumer: string;
          ids: string[];
          delayMs?: number | undefined;
          visibilityTimeoutMs?: number | undefined;
        } = request.body;
        const nack = action === '_nack';
        const changed = await service.lease(
          principal.tenant,
          request.params.name,
          request.params.group,
          b.consumer,
          b.ids,
          nack ? (b.delayMs ?? 0) : (b.visibilityTimeoutMs ?? 0),
          nack ? 'nack' : 'extend',
        );
        return { changed };
      },
    );
  }

  app.get(
    '/:name/groups/:group/pending',
    {
      config: { scope: CONSUME, module: 'queues' },
      schema: {
        operationId: 'queuePending',
        tags: TAGS,
        summary: 'In-flight messages of a group',
        description: 'Delivered and not yet acknowledged, oldest first, paged.',
        params: GroupParams,
        querystring: PageQuery,
        response: {
          200: jsonResponse('A page of entries.', PendingList),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, CONSUME, request.params.name, 'path.name');
      return service.pending(
        principal.tenant,
        request.params.name,
        request.params.group,
        request.query.cursor,
        request.query.limit ?? 100,
      );
    },
  );

  app.get(
    '/:name/dlq',
    {
      config: { scope: ADMIN, module: 'queues' },
      schema: {
        operationId: 'queueDeadLetters',
        tags: TAGS,
        summary: 'List the dead-letter queue',
        description:
          'Messages received QUEUE_MAX_RECEIVE_COUNT times without an ack, oldest first. The dead-letter queue is also a queue (`<name>.dlq`) you can consume.',
        params: NameParams,
        querystring: PageQuery,
        response: {
          200: jsonResponse('A page of dead letters.', DeadLetters),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, ADMIN, request.params.name, 'path.name');
      const page = await service.deadLetters(
        principal.tenant,
        request.params.name,
        request.query.cursor,
        request.query.limit ?? 100,
      );
      const items = page.messages
        .map(
          (m) =>
            `{"id":"${m.id}","data":${m.json},"enqueuedAt":"${iso(m.enqueuedAt)}","originalId":${JSON.stringify(m.originalId)},"group":${JSON.stringify(m.group)},"receiveCount":${m.receiveCount}}`,
        )
        .join(',');
      return reply
        .type(JSON_TYPE)
        .send(`{"messages":[${items}],"cursor":${JSON.stringify(page.cursor)}}`);
    },
  );

  app.post(
    '/:name/dlq/_redrive',
    {
      config: { scope: ADMIN, module: 'queues' },
      schema: {
        operationId: 'queueRedrive',
        tags: TAGS,
        summary: 'Move dead letters back into the queue',
        description:
          'The given dead-letter ids, or the oldest 100: each becomes a new message (receive count starts again). Call again while `remaining` > 0 to move them all.',
        params: NameParams,
        body: RedriveBody,
        response: {
          200: jsonResponse('Moved.', RedriveResult),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, ADMIN, request.params.name, 'path.name');
      return service.redrive(principal.tenant, request.params.name, request.body.ids, 100);
    },
  );
};
