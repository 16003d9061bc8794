/**
 * Tier URLs. A target is named by a URL that carries where the objects live, never who may read
 * them: credentials come from the SDKs' environment variables or credentials files. A URL with
 * credentials in it is refused (and the refusal does not repeat them), and `redacted` is rebuilt
 * from the parsed parts only, so nothing unexpected in the input can leak through it.
 *
 *   file:///var/lib/vtl-tier
 *   s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&pathStyle=true
 *   azure://container/prefix?account=myaccount&endpoint=https://myaccount.blob.core.windows.net
 */
import { fileURLToPath } from 'node:url';
import { TierConfigError } from './errors.js';
import { validateKey } from './keys.js';

export interface FsTarget { kind: 'fs'; root: string; redacted: string }
export interface S3Target {
  kind: 's3';
  bucket: string;
  prefix: string;
  endpoint?: string;
  region?: string;
  pathStyle: boolean;
  multipartThreshold?: number;
  partSize?: number;
  lockMode: 'COMPLIANCE' | 'GOVERNANCE';
  redacted: string;
}
export interface AzureTarget {
  kind: 'azure';
  container: string;
  prefix: string;
  account?: string;
  endpoint?: string;
  redacted: string;
}
export type TierTarget = FsTarget | S3Target | AzureTarget;

const SECRET_PARAMS = /key|secret|token|sig|sas|password|credential/i;
const S3_PARAMS = ['endpoint', 'region', 'pathStyle', 'forcePathStyle', 'multipartThresholdMiB', 'partSizeMiB', 'lockMode'];
const AZURE_PARAMS = ['account', 'endpoint'];
const MiB = 1024 * 1024;

export function parseTierUrl(input: string): TierTarget {
  const url = parse(input);
  if (url.username || url.password) {
    throw new TierConfigError(`credentials in a tier URL are not accepted (${url.protocol}//…): use the SDK's environment variables or credentials file`);
  }
  // URL parsing quietly resolves '.' and '..' in paths; a target must say what it means.
  const rawPath = input.split(/[?#]/)[0].replace(/^[a-z0-9+.-]+:\/\/[^/]*/i, '');
  if (/(^|\/)\.\.?(\/|$)/.test(rawPath)) throw new TierConfigError("tier URL path must not contain '.' or '..' segments");
  switch (url.protocol) {
    case 'file:': return parseFile(url);
    case 's3:': return parseS3(url);
    case 'azure:': return parseAzure(url);
    default: throw new TierConfigError(`unknown tier scheme ${JSON.stringify(url.protocol)}: use file://, s3:// or azure://`);
  }
}

function parse(input: string): URL {
  try {
    return new URL(input);
  } catch {
    // The input may hold secrets: say only what kind of thing was wrong.
    throw new TierConfigError('malformed tier URL: expected file:///path, s3://bucket/prefix or azure://container/prefix');
  }
}

function parseFile(url: URL): FsTarget {
  if (url.host !== '') throw new TierConfigError('file tier URL must be file:///absolute/path (no host)');
  if (url.search) throw new TierConfigError('file tier URL takes no query parameters');
  const root = fileURLToPath(url).replace(/\/+$/, '') || '/';
  return { kind: 'fs', root, redacted: `file://${encodeURI(root)}` };
}

function parseS3(url: URL): S3Target {
  const params = checkParams(url, S3_PARAMS);
  const bucket = url.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new TierConfigError(`invalid S3 bucket name ${JSON.stringify(bucket)}`);
  const prefix = parsePrefix(url);
  const endpoint = params.get('endpoint') === null ? undefined : parseEndpoint(params.get('endpoint')!);
  const region = params.get('region') ?? undefined;
  if (region !== undefined && !/^[a-z0-9-]{1,64}$/.test(region)) throw new TierConfigError(`invalid S3 region ${JSON.stringify(region)}`);
  const pathStyle = parseBool(params.get('pathStyle') ?? params.get('forcePathStyle'), endpoint !== undefined);
  const multipartThreshold = parseMiB(params, 'multipartThresholdMiB', 5);
  const partSize = parseMiB(params, 'partSizeMiB', 5);
  const lockMode = (params.get('lockMode') ?? 'COMPLIANCE').toUpperCase();
  if (lockMode !== 'COMPLIANCE' && lockMode !== 'GOVERNANCE') throw new TierConfigError('lockMode must be COMPLIANCE or GOVERNANCE');
  const query = new URLSearchParams();
  if (endpoint) query.set('endpoint', endpoint);
  if (region) query.set('region', region);
  query.set('pathStyle', String(pathStyle));
  if (multipartThreshold) query.set('multipartThresholdMiB', String(multipartThreshold / MiB));
  if (partSize) query.set('partSizeMiB', String(partSize / MiB));
  if (lockMode !== 'COMPLIANCE') query.set('lockMode', lockMode);
  const redacted = `s3://${bucket}/${prefix}?${query}`;
  return { kind: 's3', bucket, prefix, endpoint, region, pathStyle, multipartThreshold, partSize, lockMode, redacted };
}

function parseAzure(url: URL): AzureTarget {
  const params = checkParams(url, AZURE_PARAMS);
  const container = url.hostname;
  if (!/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(container)) throw new TierConfigError(`invalid Azure container name ${JSON.stringify(container)}`);
  const prefix = parsePrefix(url);
  const account = params.get('account') ?? undefined;
  if (account !== undefined && !/^[a-z0-9]{3,24}$/.test(account)) throw new TierConfigError(`invalid Azure storage account name ${JSON.stringify(account)}`);
  const endpoint = params.get('endpoint') === null ? undefined : parseEndpoint(params.get('endpoint')!);
  const query = new URLSearchParams();
  if (account) query.set('account', account);
  if (endpoint) query.set('endpoint', endpoint);
  const q = query.toString();
  return { kind: 'azure', container, prefix, account, endpoint, redacted: `azure://${container}/${prefix}${q ? `?${q}` : ''}` };
}

/** Unknown parameters are errors (a typo must not silently fall back to a default). */
function checkParams(url: URL, allowed: string[]): URLSearchParams {
  for (const name of url.searchParams.keys()) {
    if (SECRET_PARAMS.test(name)) {
      throw new TierConfigError(`credentials in a tier URL are not accepted (parameter ${JSON.stringify(name)}): use the SDK's environment variables or credentials file`);
    }
    if (!allowed.includes(name)) throw new TierConfigError(`unknown ${url.protocol}// URL parameter ${JSON.stringify(name)}; known: ${allowed.join(', ')}`);
  }
  return url.searchParams;
}

/** The path after the bucket or container, as a key prefix ending in '/' (or '' for the root). */
function parsePrefix(url: URL): string {
  let path: string;
  try {
    path = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, '');
  } catch {
    throw new TierConfigError('tier URL path is not valid percent-encoding');
  }
  if (path === '') return '';
  try {
    validateKey(path);
  } catch (err) {
    throw new TierConfigError(`invalid tier prefix: ${(err as Error).message}`);
  }
  return `${path}/`;
}

function parseEndpoint(value: string): string {
  let endpoint: URL;
  try {
    endpoint = new URL(value);
  } catch {
    throw new TierConfigError('endpoint parameter is not a URL');
  }
  if (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') throw new TierConfigError('endpoint must be http:// or https://');
  if (endpoint.username || endpoint.password || endpoint.search) {
    throw new TierConfigError('endpoint must not carry credentials or a query string (SAS tokens belong in the environment)');
  }
  return `${endpoint.origin}${endpoint.pathname.replace(/\/+$/, '')}`;
}

function parseBool(value: string | null, fallback: boolean): boolean {
  if (value === null) return fallback;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new TierConfigError(`expected true or false, got ${JSON.stringify(value)}`);
}

function parseMiB(params: URLSearchParams, name: string, min: number): number | undefined {
  const raw = params.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > 5120) throw new TierConfigError(`${name} must be an integer from ${min} to 5120`);
  return n * MiB;
}
