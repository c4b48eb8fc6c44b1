// Resync metrics, in the process-wide registry of admin/metrics.ts.
import client from 'prom-client';
import { registry } from '../admin/metrics.js';

export const resyncInProgress = new client.Gauge({
  name: 'recall_resync_in_progress',
  help: '1 while this replica replaces its database with a copy from a donor',
  registers: [registry],
});

export const resyncBytes = new client.Gauge({
  name: 'recall_resync_bytes',
  help: 'Bytes received by the resync in progress (or the last one)',
  registers: [registry],
});

export const resyncBytesTotal = new client.Gauge({
  name: 'recall_resync_total_bytes',
  help: 'Size of the copy being received (an estimate until the donor has finished), 0 when unknown',
  registers: [registry],
});

export const resyncRate = new client.Gauge({
  name: 'recall_resync_bytes_per_second',
  help: 'Transfer rate of the resync in progress',
  registers: [registry],
});

export const resyncsTotal = new client.Counter({
  name: 'recall_resyncs_total',
  help: 'Full resyncs of this replica, by method and outcome',
  labelNames: ['method', 'outcome'] as const,
  registers: [registry],
});

export const donationsTotal = new client.Counter({
  name: 'recall_resync_donations_total',
  help: 'Copies of this replica\'s database taken for other replicas, by method',
  labelNames: ['method'] as const,
  registers: [registry],
});
