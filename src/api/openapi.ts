/**
 * OpenAPI 3 document built from the routes as they are registered (fastify's onRoute hook):
 * their JSON schemas, their access role (`x-vtl-access`) and summaries. Nothing is written
 * twice, so the document cannot drift from what the server validates.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { Access } from './auth.js';

interface Collected {
  method: string;
  url: string;
  schema: Record<string, unknown>;
  access: Access;
}

export class OpenApiCollector {
  private readonly routes: Collected[] = [];

  attach(app: FastifyInstance): void {
    app.addHook('onRoute', (r: RouteOptions) => {
      const methods = Array.isArray(r.method) ? r.method : [r.method];
      const access = ((r.config as { access?: Access } | undefined)?.access ?? 'public') as Access;
      for (const m of methods) {
        if (m === 'HEAD' || (r.schema as { hide?: boolean } | undefined)?.hide) continue;
        this.routes.push({ method: m.toLowerCase(), url: r.url, schema: (r.schema ?? {}) as Record<string, unknown>, access });
      }
    });
  }

  document(info: { title: string; version: string }): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const r of this.routes) {
      const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      (paths[path] ??= {})[r.method] = this.operation(r);
    }
    return {
      openapi: '3.0.3',
      info: { ...info, description: 'vtl: a virtual tape library with inline deduplication' },
      servers: [{ url: '/' }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a vtl token (vtl_...)' } } },
      paths,
    };
  }

  private operation(r: Collected): Record<string, unknown> {
    const s = r.schema as {
      summary?: string;
      description?: string;
      tags?: string[];
      params?: JsonObject;
      querystring?: JsonObject;
      body?: JsonObject;
      consumes?: string[];
      produces?: string[];
      response?: Record<string, JsonObject>;
    };
    const parameters = [...params(s.params, 'path'), ...params(s.querystring, 'query')];
    const op: Record<string, unknown> = {
      operationId: `${r.method}${r.url.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      summary: s.summary,
      description: s.description,
      tags: s.tags,
      'x-vtl-access': r.access,
      responses: responses(s.response, s.produces),
    };
    if (parameters.length) op.parameters = parameters;
    if (r.access !== 'public') op.security = [{ bearer: [] }];
    if (s.body) op.requestBody = { required: true, content: { 'application/json': { schema: s.body } } };
    else if (s.consumes) op.requestBody = { required: true, content: Object.fromEntries(s.consumes.map((c) => [c, { schema: { type: 'string', format: 'binary' } }])) };
    return op;
  }
}

type JsonObject = { properties?: Record<string, unknown>; required?: string[]; [k: string]: unknown };

function params(s: JsonObject | undefined, where: 'path' | 'query') {
  return Object.entries(s?.properties ?? {}).map(([name, schema]) => ({
    name,
    in: where,
    required: where === 'path' || (s?.required ?? []).includes(name),
    schema,
  }));
}

function responses(r: Record<string, JsonObject> | undefined, produces?: string[]) {
  const out: Record<string, unknown> = {};
  for (const [code, schema] of Object.entries(r ?? {})) {
    const key = code.toUpperCase();
    const description = (schema.description as string | undefined) ?? (key.startsWith('2') ? 'success' : 'error');
    if (schema.type === 'null') out[key] = { description };
    else out[key] = { description, content: { 'application/json': { schema } } };
  }
  if (produces) out['200'] = { description: 'the tape file as a byte stream', content: Object.fromEntries(produces.map((c) => [c, { schema: { type: 'string', format: 'binary' } }])) };
  if (!Object.keys(out).some((k) => k.startsWith('2'))) out['200'] = { description: 'success' };
  return out;
}
