// Replication engine metrics, registered in the process-wide registry (/metrics).
import client from 'prom-client';
import { registry } from '../admin/metrics.js';

export const raftSyncSeconds = new client.Histogram({
  name: 'recall_raft_sync_seconds',
  help: 'Duration of the one fsync (group commit) per Ready batch that wrote entries, a snapshot, a term/vote change or a membership commit (not the syncs that only carry a new commit index)',
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
  registers: [registry],
});

export const raftBatchEntries = new client.Histogram({
  name: 'recall_raft_batch_entries',
  help: 'Entries made durable per Ready batch',
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096],
  registers: [registry],
});

export const raftProposalsTotal = new client.Counter({
  name: 'recall_raft_proposals_total',
  help: 'Proposals by outcome (committed, not_leader, timeout, lost_leadership, dropped)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const raftMessagesDroppedTotal = new client.Counter({
  name: 'recall_raft_messages_dropped_total',
  help: 'Consensus messages dropped because the peer was unreachable or its send queue full',
  registers: [registry],
});
