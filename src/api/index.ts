/**
 * API layer: the fastify application of `vtl serve`.
 *
 * Guarantees:
 * - Every route has JSON schemas (fastify validates requests and serializes responses with
 *   them) and the OpenAPI 3 document at /api/v1/openapi.json is generated from those schemas.
 * - Every route except /api/v1/health, /api/v1/openapi.json, /metrics and the dashboard's
 *   static files (`/`, `/assets/...`: no data, no token) needs a bearer token whose role
 *   (auditor < operator < admin) is at least the route's; the check runs before any body is
 *   read. Tokens are stored as SHA-256 hashes only.
 * - Errors are `{error, message}`: library error codes and tape sense keys map to 4xx/507;
 *   internal failures are 500 with their details in the server log, not in the response.
 * - Every mutation made with a valid token (refused ones too) is in the hash-chained audit
 *   log before its answer leaves; operations (verify, GC, scrub, expiry) run as jobs
 *   (routes/ops.ts over src/jobs/).
 * - HTTP tape streams (PUT/GET .../drives/:n/file) run inside the drive's session, stream with
 *   bounded memory, answer a PUT only after its filemark is durable, and roll a broken-off
 *   upload back to where it started.
 * - The capacity history (history.ts, GET /api/v1/stats/history) samples the /stats totals and
 *   the protocols' byte counters every VTL_HISTORY_INTERVAL_MS (default 60 s) into LevelDB:
 *   fine points kept 2 days, hourly roll-ups kept 400 days, pruned as new points arrive.
 * The API talks to the library layer (and reads store statistics); it never imports
 * protocols: the composition root hands their routes in (`ApiDeps.routes`).
 */
export { buildApp } from './app.js';
export type { ApiDeps, ApiContext } from './app.js';
export { TokenStore, ensureAdminToken, ROLES, ADMIN_TOKEN_FILE } from './auth.js';
export type { Role, Access, TokenRecord } from './auth.js';
export { ApiError } from './errors.js';
export type { Traffic } from './history.js';
