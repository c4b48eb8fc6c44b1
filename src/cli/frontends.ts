// Starting the client protocol listeners (the MySQL frontend lives in src/frontend/mysql).
import { MysqlFrontend, type MysqlFrontendOptions } from '../frontend/mysql/server.js';

export type { MysqlFrontendOptions };

export interface ClientListener {
  /** The bound port. */
  port: number;
  connections(): number;
  close(): Promise<void>;
}

export async function startMysqlFrontend(opts: MysqlFrontendOptions): Promise<ClientListener> {
  const fe = new MysqlFrontend(opts);
  const bound = await fe.listen();
  return { port: bound.port, connections: () => fe.stats().connections, close: () => fe.close() };
}
