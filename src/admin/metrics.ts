// Process-wide Prometheus metrics (prom-client). Every component registers what it
// measures here so /metrics on the admin port shows one coherent set.
import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'recall_' });

export const clientConnections = new client.Gauge({
  name: 'recall_client_connections',
  help: 'Open client connections by protocol',
  labelNames: ['protocol'] as const,
  registers: [registry],
});

export const clientConnectionsTotal = new client.Counter({
  name: 'recall_client_connections_total',
  help: 'Client connections accepted (or refused) by protocol and outcome',
  labelNames: ['protocol', 'outcome'] as const,
  registers: [registry],
});

export const statementsTotal = new client.Counter({
  name: 'recall_statements_total',
  help: 'Statements handled by protocol and kind (read, write, ddl, transaction, session, other)',
  labelNames: ['protocol', 'kind'] as const,
  registers: [registry],
});

export const errorsTotal = new client.Counter({
  name: 'recall_errors_total',
  help: 'Errors returned to clients by protocol and origin (database, recall, protocol)',
  labelNames: ['protocol', 'origin'] as const,
  registers: [registry],
});

export const statementLatency = new client.Histogram({
  name: 'recall_statement_duration_seconds',
  help: 'Time from a command arriving to its last response byte being written',
  labelNames: ['protocol', 'kind'] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const managedServerUp = new client.Gauge({
  name: 'recall_managed_server_up',
  help: '1 while the managed database server is running, 0 otherwise (absent in hook mode)',
  registers: [registry],
});

export const managedServerRestartsTotal = new client.Counter({
  name: 'recall_managed_server_restarts_total',
  help: 'Restarts of the managed database server after it died',
  registers: [registry],
});

export const databaseReachable = new client.Gauge({
  name: 'recall_database_reachable',
  help: '1 when the last readiness check reached the local database, 0 otherwise',
  registers: [registry],
});
