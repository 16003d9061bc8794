/** Health, store statistics, OpenAPI, Prometheus metrics and token management. */
import type { FastifyInstance } from 'fastify';
import { ROLES, type Role } from '../auth.js';
import { ApiError } from '../errors.js';
import type { ApiContext } from '../app.js';
import { errors, listOf, statsSchema, tokenSchema } from '../schemas.js';
import { storeTotals } from '../totals.js';

export async function systemRoutes(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  app.get('/api/v1/health', {
    config: { access: 'public' },
    schema: {
      summary: 'liveness',
      tags: ['system'],
      response: { 200: { type: 'object', properties: { status: { type: 'string' }, version: { type: 'string' }, uptimeSeconds: { type: 'number' }, rmt: { anyOf: [{ type: 'string' }, { type: 'null' }] } } } },
    },
    handler: async () => ({ status: 'ok', version: ctx.version, uptimeSeconds: (Date.now() - ctx.startedAt) / 1000, rmt: ctx.rmt?.() ?? null }),
  });

  app.get('/api/v1/openapi.json', {
    config: { access: 'public' },
    schema: { summary: 'this document (OpenAPI 3)', tags: ['system'] },
    handler: async () => ctx.openapi.document({ title: 'vtl', version: ctx.version }),
  });

  app.get('/metrics', {
    config: { access: 'public' },
    schema: { summary: 'Prometheus metrics', tags: ['system'], produces: ['text/plain'] },
    handler: async (_req, reply) => {
      const text = await ctx.metrics.registry.metrics();
      return reply.type(ctx.metrics.registry.contentType).send(text);
    },
  });

  app.get('/api/v1/stats', {
    config: { access: 'auditor' },
    schema: { summary: 'store-wide logical and stored bytes, dedup and compression ratios', tags: ['system'], response: { 200: statsSchema, ...errors } },
    handler: async () => storeTotals(ctx),
  });

  app.get('/api/v1/auth/whoami', {
    config: { access: 'auditor' },
    schema: { summary: 'the token this request carries', tags: ['auth'], response: { 200: tokenSchema, ...errors } },
    handler: async (req) => req.token,
  });

  app.get('/api/v1/tokens', {
    config: { access: 'admin' },
    schema: { summary: 'list tokens (never their secrets)', tags: ['auth'], response: { 200: listOf(tokenSchema), ...errors } },
    handler: async () => ({ items: await ctx.tokens.list() }),
  });

  app.post<{ Body: { name: string; role: Role } }>('/api/v1/tokens', {
    config: { access: 'admin' },
    schema: {
      summary: 'create a token; its secret is shown once',
      tags: ['auth'],
      body: {
        type: 'object',
        required: ['name', 'role'],
        additionalProperties: false,
        properties: { name: { type: 'string', minLength: 1, maxLength: 64 }, role: { type: 'string', enum: [...ROLES] } },
      },
      response: { 201: { type: 'object', properties: { ...tokenSchema.properties, token: { type: 'string' } } }, ...errors },
    },
    handler: async (req, reply) => {
      const { token, record } = await ctx.tokens.create(req.body.name, req.body.role);
      return reply.code(201).send({ ...record, token });
    },
  });

  app.delete<{ Params: { id: string } }>('/api/v1/tokens/:id', {
    config: { access: 'admin' },
    schema: {
      summary: 'revoke a token',
      tags: ['auth'],
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9a-f]{12}$' } } },
      response: { 200: tokenSchema, ...errors },
    },
    handler: async (req) => {
      const admins = (await ctx.tokens.list()).filter((t) => t.role === 'admin');
      if (admins.length === 1 && admins[0].id === req.params.id) {
        throw new ApiError(409, 'LAST_ADMIN', 'refusing to revoke the last admin token: create another admin token first');
      }
      return ctx.tokens.revoke(req.params.id);
    },
  });
}
