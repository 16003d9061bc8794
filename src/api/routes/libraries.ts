/** Libraries, their elements (like `mtx status`) and the changer: move, load, unload, import, export. */
import type { FastifyInstance } from 'fastify';
import type { ApiContext } from '../app.js';
import { barcode, driveSchema, elementSchema, errors, libName, librarySchema, listOf } from '../schemas.js';

const libParams = { type: 'object', required: ['lib'], properties: { lib: libName } } as const;
const driveParams = { type: 'object', required: ['lib', 'n'], properties: { lib: libName, n: { type: 'integer', minimum: 0 } } } as const;
const barcodeBody = { type: 'object', required: ['barcode'], additionalProperties: false, properties: { barcode } } as const;
const done = { type: 'object', properties: { ok: { type: 'boolean' }, moved: { type: 'array', items: { type: 'string' } } } } as const;

type Lib = { Params: { lib: string } };
type DriveP = { Params: { lib: string; n: number } };

export async function libraryRoutes(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const libs = ctx.libraries;
  const tags = ['libraries'];

  app.get('/api/v1/libraries', {
    config: { access: 'auditor' },
    schema: { summary: 'list libraries', tags, response: { 200: listOf(librarySchema), ...errors } },
    handler: async () => ({ items: await libs.listLibraries() }),
  });

  app.post<{ Body: { name: string; drives: number; slots: number; mailslots: number; model?: string; driveModel?: string } }>('/api/v1/libraries', {
    config: { access: 'operator' },
    schema: {
      summary: 'create a library',
      tags,
      body: {
        type: 'object',
        required: ['name', 'drives', 'slots', 'mailslots'],
        additionalProperties: false,
        properties: {
          name: libName,
          drives: { type: 'integer', minimum: 1 },
          slots: { type: 'integer', minimum: 1 },
          mailslots: { type: 'integer', minimum: 0 },
          model: { type: 'string', enum: ['IBM 03584L32', 'STK L700'] },
          driveModel: { type: 'string' },
        },
      },
      response: { 201: librarySchema, ...errors },
    },
    handler: async (req, reply) => reply.code(201).send(await libs.createLibrary(req.body)),
  });

  app.get<Lib>('/api/v1/libraries/:lib', {
    config: { access: 'auditor' },
    schema: { summary: 'show a library', tags, params: libParams, response: { 200: librarySchema, ...errors } },
    handler: async (req) => libs.getLibrary(req.params.lib),
  });

  app.delete<Lib>('/api/v1/libraries/:lib', {
    config: { access: 'operator' },
    schema: { summary: 'delete an empty library', tags, params: libParams, response: { 200: done, ...errors } },
    handler: async (req) => {
      await libs.deleteLibrary(req.params.lib);
      return { ok: true };
    },
  });

  app.get<Lib>('/api/v1/libraries/:lib/elements', {
    config: { access: 'auditor' },
    schema: {
      summary: 'every drive, storage slot and mail slot with its cartridge (READ ELEMENT STATUS, like mtx status)',
      tags,
      params: libParams,
      response: { 200: listOf(elementSchema), ...errors },
    },
    handler: async (req) => ({ items: await libs.elements(req.params.lib) }),
  });

  app.post<Lib & { Body: { from: number; to: number } }>('/api/v1/libraries/:lib/move', {
    config: { access: 'operator' },
    schema: {
      summary: 'MOVE MEDIUM between two element addresses',
      tags,
      params: libParams,
      body: { type: 'object', required: ['from', 'to'], additionalProperties: false, properties: { from: { type: 'integer' }, to: { type: 'integer' } } },
      response: { 200: done, ...errors },
    },
    handler: async (req) => {
      await libs.move(req.params.lib, req.body.from, req.body.to);
      return { ok: true };
    },
  });

  app.post<Lib & { Body: { barcode?: string } }>('/api/v1/libraries/:lib/import', {
    config: { access: 'operator' },
    schema: {
      summary: 'move cartridges from the mail slots into free storage slots (one, or all when no barcode)',
      tags,
      params: libParams,
      body: { type: 'object', additionalProperties: false, properties: { barcode } },
      response: { 200: done, ...errors },
    },
    handler: async (req) => ({ ok: true, moved: await libs.importCartridges(req.params.lib, req.body?.barcode) }),
  });

  app.post<Lib & { Body: { barcode: string } }>('/api/v1/libraries/:lib/export', {
    config: { access: 'operator' },
    schema: { summary: 'move a cartridge into a free mail slot', tags, params: libParams, body: barcodeBody, response: { 200: done, ...errors } },
    handler: async (req) => {
      await libs.exportCartridge(req.params.lib, req.body.barcode);
      return { ok: true, moved: [req.body.barcode] };
    },
  });

  app.post<Lib & { Body: { barcode: string } }>('/api/v1/libraries/:lib/insert', {
    config: { access: 'operator' },
    schema: { summary: 'put a cartridge from the vault into a free mail slot', tags, params: libParams, body: barcodeBody, response: { 200: done, ...errors } },
    handler: async (req) => {
      await libs.fromVault(req.params.lib, req.body.barcode);
      return { ok: true, moved: [req.body.barcode] };
    },
  });

  app.post<Lib & { Body: { barcode: string } }>('/api/v1/libraries/:lib/remove', {
    config: { access: 'operator' },
    schema: { summary: 'take an exported cartridge out of its mail slot into the vault', tags, params: libParams, body: barcodeBody, response: { 200: done, ...errors } },
    handler: async (req) => {
      const c = await libs.getCartridge(req.body.barcode);
      if (c.location.kind === 'vault' || c.location.library !== req.params.lib) {
        await libs.getLibrary(req.params.lib);
        return { ok: true, moved: [] };
      }
      await libs.toVault(req.body.barcode);
      return { ok: true, moved: [req.body.barcode] };
    },
  });

  app.get<Lib>('/api/v1/libraries/:lib/drives', {
    config: { access: 'auditor' },
    schema: { summary: 'drives with their cartridge, session and position', tags: ['drives'], params: libParams, response: { 200: listOf(driveSchema), ...errors } },
    handler: async (req) => {
      const lib = await libs.getLibrary(req.params.lib);
      const items = [];
      for (let i = 0; i < lib.drives; i++) items.push(await (await libs.drive(lib.name, i)).status());
      return { items };
    },
  });

  app.get<DriveP>('/api/v1/libraries/:lib/drives/:n', {
    config: { access: 'auditor' },
    schema: { summary: 'one drive (numbered from 0)', tags: ['drives'], params: driveParams, response: { 200: driveSchema, ...errors } },
    handler: async (req) => (await libs.drive(req.params.lib, req.params.n)).status(),
  });

  app.post<DriveP & { Body: { barcode: string } }>('/api/v1/libraries/:lib/drives/:n/load', {
    config: { access: 'operator' },
    schema: { summary: 'load a cartridge of this library into a drive', tags: ['drives'], params: driveParams, body: barcodeBody, response: { 200: driveSchema, ...errors } },
    handler: async (req) => {
      await libs.load(req.params.lib, req.params.n, req.body.barcode);
      return (await libs.drive(req.params.lib, req.params.n)).status();
    },
  });

  app.post<DriveP>('/api/v1/libraries/:lib/drives/:n/unload', {
    config: { access: 'operator' },
    schema: { summary: 'unload a drive back to its home slot (a sync point)', tags: ['drives'], params: driveParams, response: { 200: driveSchema, ...errors } },
    handler: async (req) => {
      await libs.unload(req.params.lib, req.params.n);
      return (await libs.drive(req.params.lib, req.params.n)).status();
    },
  });
}
