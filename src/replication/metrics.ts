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

export const laneConflicts = new client.Counter({
  name: 'recall_lane_conflicts_total',
  help: 'Optimistic transactions rolled back at COMMIT because running them again on the write lane gave other results than the client got (40001)',
  registers: [registry],
});

export const laneBatchStatements = new client.Histogram({
  name: 'recall_lane_batch_statements',
  help: 'Statements per group-commit batch of the write lane',
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
  registers: [registry],
});

export const laneStepSeconds = new client.Histogram({
  name: 'recall_lane_step_seconds',
  help: 'Time of the write lane steps: execute (statements on the leader), replicate (until a majority has the entry), commit (applied index and COMMIT)',
  labelNames: ['step'] as const,
  buckets: [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3],
  registers: [registry],
});
