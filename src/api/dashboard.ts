/**
 * The web dashboard's files: the single-page app that `npm ci` (prepare -> build:web) builds
 * into dist/web is served at `/` and `/assets/...`. It is public like any page: it holds no
 * data and no token; everything it shows comes from the REST API with the token the user types.
 * Only names inside the build directory are served (no `..`, no dot files), with a strict
 * Content-Security-Policy so the page can talk to this server alone.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
};

const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** dist/web from this file: dist/api/dashboard.js when built, src/api/dashboard.ts under tsx. */
export function defaultDashboardDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const candidates = [resolve(here, '../web'), resolve(here, '../../dist/web')];
  return candidates.find((d) => existsSync(join(d, 'index.html'))) ?? candidates[candidates.length - 1];
}

export async function dashboardRoutes(app: FastifyInstance, dir: string = defaultDashboardDir()): Promise<void> {
  const root = resolve(dir);
  const send = async (reply: FastifyReply, name: string, immutable: boolean) => {
    const path = resolve(root, name);
    if (!path.startsWith(root + sep) || name.split('/').some((p) => p.startsWith('.'))) return notFound(reply, name);
    let body: Buffer;
    try {
      body = await readFile(path);
    } catch {
      return notFound(reply, name);
    }
    // Vite names assets by content hash, so they never change; index.html always may.
    return reply
      .type(TYPES[extname(path)] ?? 'application/octet-stream')
      .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(body);
  };
  const page = { config: { access: 'public' as const }, schema: { hide: true } };

  app.get('/', page, async (_req, reply) => {
    if (!existsSync(join(root, 'index.html'))) {
      return reply.code(503).type('text/plain; charset=utf-8').send('vtl: the dashboard is not built; run `npm run build:web` (npm ci does it)\n');
    }
    return send(reply, 'index.html', false);
  });
  app.get<{ Params: { '*': string } }>('/assets/*', page, async (req, reply) => send(reply, `assets/${req.params['*']}`, true));
  app.get('/favicon.svg', page, async (_req, reply) => send(reply, 'favicon.svg', false));
}

function notFound(reply: FastifyReply, name: string) {
  return reply.code(404).send({ error: 'NOT_FOUND', message: `no dashboard file ${JSON.stringify(name)}` });
}
