/** The capacity history (src/api/history.ts): logical vs stored bytes, ratios and traffic over time. */
import type { FastifyInstance } from 'fastify';
import type { ApiContext } from '../app.js';
import { ApiError } from '../errors.js';
import type { Resolution } from '../history.js';
import { errors, historyPointSchema } from '../schemas.js';

interface Query {
  from?: string;
  to?: string;
  resolution: Resolution | 'auto';
  maxPoints: number;
}

const nullableNum = { anyOf: [{ type: 'number' }, { type: 'null' }] } as const;

export async function historyRoutes(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  app.get<{ Querystring: Query }>('/api/v1/stats/history', {
    config: { access: 'auditor' },
    schema: {
      summary: 'logical and stored bytes, ratios and traffic over time: one point per interval for 2 days (fine), one per hour for 400 days (hourly)',
      description:
        'from defaults to one day before to, to to now. resolution auto takes fine points when from is within the last 2 days, hourly ones otherwise. ' +
        'When the range holds more than maxPoints points, adjacent ones are merged (totals of the later one, traffic summed). ' +
        'latest is the newest fine point whatever the range; throughput = traffic / seconds.',
      tags: ['system'],
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          from: { type: 'string', format: 'date-time' },
          to: { type: 'string', format: 'date-time' },
          resolution: { type: 'string', enum: ['auto', 'fine', 'hourly'], default: 'auto' },
          maxPoints: { type: 'integer', minimum: 1, maximum: 10000, default: 1000 },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            resolution: { type: 'string', enum: ['fine', 'hourly'] },
            from: { type: 'string' },
            to: { type: 'string' },
            intervalSeconds: { ...nullableNum, description: 'how often the server samples (null: sampling is off)' },
            points: { type: 'array', items: historyPointSchema },
            latest: { anyOf: [historyPointSchema, { type: 'null' }] },
          },
        },
        ...errors,
      },
    },
    handler: async (req) => {
      const q = req.query;
      const time = (s: string | undefined) => (s === undefined ? undefined : Date.parse(s));
      try {
        const page = await ctx.history.query({ from: time(q.from), to: time(q.to), resolution: q.resolution, maxPoints: q.maxPoints });
        return { ...page, intervalSeconds: ctx.historySampler ? ctx.historySampler.intervalMs / 1000 : null };
      } catch (err) {
        if (err instanceof RangeError) throw new ApiError(400, 'INVALID', err.message);
        throw err;
      }
    },
  });
}
