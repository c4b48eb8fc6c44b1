// Replication metrics, in the process-wide registry of admin/metrics.ts.
import client from 'prom-client';
import { registry } from '../admin/metrics.js';

export const replicationApplied = new client.Gauge({
  name: 'recall_replication_applied_index',
  help: 'Highest log index applied to the local database',
  registers: [registry],
});

export const replicationDiverged = new client.Gauge({
  name: 'recall_replication_diverged',
  help: '1 when this replica stopped applying because its outcome differed from the leader',
  registers: [registry],
});

export const replicationWrites = new client.Counter({
  name: 'recall_replication_writes_total',
  help: 'Writes sent to the write lane, run here (local) or forwarded to the leader',
  labelNames: ['path'] as const,
  registers: [registry],
});
