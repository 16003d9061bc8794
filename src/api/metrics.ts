/**
 * Prometheus metrics of one service instance (its own registry, so several instances in one
 * process, as in tests, do not collide): HTTP requests, tape stream bytes, and store gauges
 * read at scrape time.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { StoreStats } from '../dedup/store.js';

export class ApiMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly duration: Histogram<'method' | 'route'>;
  readonly tapeBytes: Counter<'direction'>;
  readonly tapeFiles: Counter<'direction'>;

  constructor(storeStats: () => StoreStats, counts: () => Promise<{ libraries: number; cartridges: number }>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: 'vtl_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers });
    this.duration = new Histogram({
      name: 'vtl_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60, 600],
      registers,
    });
    this.tapeBytes = new Counter({ name: 'vtl_tape_stream_bytes_total', help: 'Bytes moved by HTTP tape streams', labelNames: ['direction'], registers });
    this.tapeFiles = new Counter({ name: 'vtl_tape_stream_files_total', help: 'Tape files moved by HTTP tape streams', labelNames: ['direction'], registers });
    const gauge = (name: string, help: string, pick: (s: StoreStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(pick(storeStats()));
        },
      });
    gauge('vtl_store_stored_bytes', 'Bytes of container files', (s) => s.storedBytes);
    gauge('vtl_store_unique_bytes', 'Raw bytes of unique chunks', (s) => s.uniqueBytes);
    gauge('vtl_store_chunks', 'Unique chunks', (s) => s.chunks);
    gauge('vtl_store_containers', 'Containers', (s) => s.containers);
    for (const what of ['libraries', 'cartridges'] as const) {
      new Gauge({
        name: `vtl_${what}`,
        help: `Number of ${what}`,
        registers,
        async collect() {
          this.set((await counts())[what]);
        },
      });
    }
  }
}
