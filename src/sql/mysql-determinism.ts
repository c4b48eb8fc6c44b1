// What a write needs recorded to replay identically, and what cannot be made
// deterministic at all. Works on the code tokens of one classified statement.
// See DESIGN.md ("Determinism") for the decisions behind each rule.

import type { Token } from './mysql-lexer.js';
import type { ClassifiedStatement } from './mysql-classify.js';
import { ddlObject, hasTopLevelComma, isCall, isOp, skipParens, w } from './mysql-tokens.js';
import {
  type Finding, NON_TRANSACTIONAL_ENGINES, SERVER_VARIABLES, TIME_FUNCTIONS, TIME_WORDS, UNSAFE_FUNCTIONS,
} from './mysql-unsafe.js';

export type { Finding } from './mysql-unsafe.js';

export interface DeterminismContext {
  /** record SET TIMESTAMP (with microseconds): always, for every write — column DEFAULT/ON UPDATE
   * CURRENT_TIMESTAMP and triggers read the clock even when the statement text does not */
  timestamp: boolean;
  /** the time functions the text names (NOW, CURRENT_TIMESTAMP, ...) */
  timeFunctions: string[];
  /** RAND() without a seed: record rand_seed1/rand_seed2 */
  rand: boolean;
  /** LAST_INSERT_ID() is read or set */
  lastInsertId: boolean;
  /** record INSERT_ID: always for writes (triggers and procedures may insert into AUTO_INCREMENT tables) */
  insertId: boolean;
  /** user variables read (lower-case names) */
  userVariables: string[];
  /** session system variables read (@@sql_mode, ...): recorded like the other session variables */
  systemVariables: string[];
  /** CURRENT_USER(): the replica must apply with the same account (Recall does) */
  account: boolean;
  /** LOAD DATA LOCAL INFILE: the file's content travels in the entry */
  localInfile: boolean;
}

export interface DeterminismReport {
  context: DeterminismContext;
  /** constructs that make replay diverge: refuse the statement unless every one is rewritable */
  unsafe: Finding[];
  /** harmless for the data, worth telling (SLEEP in a write, ...) */
  warnings: Finding[];
}

type Place = 'statement' | 'values' | 'body' | 'default';

const PLACE_SUFFIX: Record<Place, string> = {
  statement: '',
  values: '',
  body: ' in a stored program body',
  default: ' in a column DEFAULT expression',
};

const PLACE_REASON: Record<Place, string> = {
  statement: '',
  values: '',
  body: ' (the body runs on every replica each time it is called or fires)',
  default: ' (the default is evaluated by every replica for each row it inserts)',
};

export function checkDeterminism(stmt: ClassifiedStatement): DeterminismReport {
  const ts = stmt.tokens;
  const report: DeterminismReport = {
    context: {
      timestamp: true, timeFunctions: [], rand: false, lastInsertId: false, insertId: true,
      userVariables: [...stmt.userVariablesRead], systemVariables: [], account: false, localInfile: !!stmt.localInfile,
    },
    unsafe: [],
    warnings: [],
  };
  const writes = stmt.kind === 'write' || stmt.kind === 'ddl' || stmt.kind === 'unsafe';
  if (!writes) {
    report.context.timestamp = false;
    report.context.insertId = false;
  }
  statementLevel(stmt, report);

  const ddl = stmt.kind === 'ddl';
  const obj = ddl ? ddlObject(ts, 1).type : '';
  const body = ddl && (obj === 'TRIGGER' || obj === 'PROCEDURE' || obj === 'FUNCTION' || obj === 'EVENT' || obj.startsWith('PACKAGE'));
  if (ddl && !body && obj !== 'TABLE') return report; // CREATE INDEX, DROP ..., GRANT: no expressions evaluated per row
  // INSERT/REPLACE ... VALUES evaluates each expression once per occurrence; anything with a
  // SELECT, UPDATE or DELETE evaluates it per row.
  const onceEach = (stmt.command === 'INSERT' || stmt.command === 'REPLACE' || stmt.command === 'CALL') && !ts.some((t) => t.type === 'word' && t.text === 'SELECT');

  if (ddl && obj === 'TABLE') {
    tableDdl(ts, report);
    return report;
  }
  scanRange(ts, 0, ts.length, body ? 'body' : onceEach ? 'values' : 'statement', writes, report);
  return report;
}

/** Functions, variables and time words in ts[from, to). */
function scanRange(ts: readonly Token[], from: number, to: number, place: Place, writes: boolean, report: DeterminismReport): void {
  const ctx = report.context;
  const seen = new Set<string>();
  for (let k = from; k < to; k++) {
    const t = ts[k];
    if (t.type === 'sysvar') {
      if (SERVER_VARIABLES.has(t.text)) {
        if (writes && !seen.has(`@@${t.text}`)) {
          seen.add(`@@${t.text}`);
          add(report, {
            construct: `@@${t.text}`,
            reason: `@@${t.text} describes the server that runs it and differs between replicas`,
            workaround: "send the value from the client, or let Recall rewrite it to the leader's value",
          }, place === 'statement' || place === 'values');
        }
      } else if (t.scope === 'global') {
        if (writes) {
          report.warnings.push({
            construct: `@@global.${t.text}`,
            reason: 'global variables are per-server configuration; replicas configured differently store different values',
            workaround: 'configure every replica alike, or read the session value (@@session.x), which Recall records',
          });
        }
      } else if (!ctx.systemVariables.includes(t.text)) {
        ctx.systemVariables.push(t.text);
      }
      continue;
    }
    if (t.type !== 'word') continue;
    const name = t.text;
    const call = isCall(ts, k);
    if (TIME_FUNCTIONS.has(name) && (call || TIME_WORDS.has(name)) && !isOp(ts, k - 1, '.')) {
      if (!ctx.timeFunctions.includes(name)) ctx.timeFunctions.push(name);
      continue;
    }
    if (!call) continue;
    if (name === 'RAND') ctx.rand = true;
    else if (name === 'LAST_INSERT_ID') ctx.lastInsertId = true;
    else if (name === 'CURRENT_USER') ctx.account = true;
    if (!writes) continue;
    const rule = UNSAFE_FUNCTIONS.get(name);
    if (rule === undefined || seen.has(name)) continue;
    seen.add(name);
    if (name === 'ENCRYPT' && hasTopLevelComma(ts, k + 1)) continue;
    const finding: Finding = { construct: `${name}()${PLACE_SUFFIX[place]}`, reason: rule.reason + PLACE_REASON[place], workaround: rule.workaround };
    if (rule.warnOnly) {
      report.warnings.push(finding);
      continue;
    }
    const rewritable = rule.rewrite === 'constant' ? place === 'statement' || place === 'values' : rule.rewrite === 'once' && place === 'values';
    add(report, finding, rewritable);
  }
}

function add(report: DeterminismReport, f: Finding, rewritable: boolean): void {
  f.rewritable = rewritable;
  report.unsafe.push(f);
}


/** Statement forms that are unsafe whatever the functions: files on the server, LIMIT without
 * ORDER BY, SKIP LOCKED, server-local schemas, events. */
function statementLevel(stmt: ClassifiedStatement, report: DeterminismReport): void {
  const ts = stmt.tokens;
  if (stmt.kind === 'unsafe' && stmt.command.startsWith('SELECT INTO')) {
    report.unsafe.push({
      construct: stmt.command.replace('SELECT INTO', 'SELECT ... INTO'),
      reason: 'it writes a file on the server that runs it: one replica, or every replica when replayed',
      workaround: 'SELECT the rows and write the file in the client (for example mariadb -e or mariadb-dump)',
    });
  }
  if (stmt.kind === 'unsafe' && stmt.command.startsWith('LOAD')) {
    report.unsafe.push({
      construct: `${stmt.command} INFILE`,
      reason: 'it reads a file on the server that runs it, which the other replicas do not have',
      workaround: `use ${stmt.command} LOCAL INFILE, so the client sends the file and Recall replicates its content`,
    });
  }
  if (stmt.kind !== 'write' && stmt.kind !== 'ddl') return;
  if (stmt.kind === 'ddl' && stmt.command === 'CREATE EVENT') {
    report.unsafe.push({
      construct: 'CREATE EVENT',
      reason: "an event runs on every replica's own event scheduler, so each replica would run its writes separately, at its own time",
      workaround: 'schedule the statement in a client (cron) that sends it through Recall, or keep the event scheduler off on all replicas',
    });
  }
  // Frames: one per parenthesis level; the statement itself is frame 0.
  const checksLimit = stmt.kind === 'write' || /^CREATE (OR REPLACE )?TABLE/.test(stmt.command);
  const ordered: boolean[] = [false];
  const afterExists: boolean[] = [false];
  let skipLocked = false;
  let localSchema = '';
  let limitFound = false;
  for (let k = 0; k < ts.length; k++) {
    const t = ts[k];
    if (t.type === 'op') {
      if (t.text === '(') {
        ordered.push(false);
        afterExists.push(w(ts, k - 1) === 'EXISTS');
      } else if (t.text === ')' && ordered.length > 1) {
        ordered.pop();
        afterExists.pop();
      }
      continue;
    }
    if (t.type !== 'word' && t.type !== 'quoted') continue;
    const word = t.type === 'word' ? t.text : t.text.toUpperCase();
    if (t.type === 'word' && word === 'ORDER' && w(ts, k + 1) === 'BY') ordered[ordered.length - 1] = true;
    else if (t.type === 'word' && word === 'LIMIT' && checksLimit && !limitFound) {
      const top = ordered.length - 1;
      if (!ordered[top] && !afterExists[top]) {
        limitFound = true;
        report.unsafe.push({
          construct: `${stmt.command.replace(/^WITH /, '')} ... LIMIT without ORDER BY`,
          reason: 'which rows LIMIT picks without ORDER BY depends on the plan and physical order of each server',
          workaround: 'add ORDER BY on a unique key (for example the primary key) before LIMIT',
        });
      }
    } else if (t.type === 'word' && word === 'SKIP' && w(ts, k + 1) === 'LOCKED') skipLocked = true;
    else if ((word === 'INFORMATION_SCHEMA' || word === 'PERFORMANCE_SCHEMA') && isOp(ts, k + 1, '.')) localSchema = word.toLowerCase();
  }
  if (skipLocked) {
    report.unsafe.push({
      construct: 'SKIP LOCKED in a write',
      reason: 'which rows are skipped depends on the locks other sessions hold on the leader at that moment; replicas see none',
      workaround: 'select the rows first (SELECT ... FOR UPDATE SKIP LOCKED as its own statement in the transaction) and write them by key',
    });
  }
  if (localSchema) {
    report.unsafe.push({
      construct: `${localSchema} in a write`,
      reason: `${localSchema} describes the server that runs the statement and differs between replicas`,
      workaround: 'read it in a separate statement and write the values as literals',
    });
  }
}

/** CREATE/ALTER TABLE: engine, and functions in DEFAULT expressions (evaluated per inserted row
 * on each replica). CREATE TABLE ... SELECT also evaluates its SELECT once, like a write. */
function tableDdl(ts: readonly Token[], report: DeterminismReport): void {
  let selectAt = -1;
  for (let k = 0; k < ts.length; k++) {
    const word = w(ts, k);
    if (word === 'ENGINE' || word === 'TYPE') {
      const v = isOp(ts, k + 1, '=') ? k + 2 : k + 1;
      const e = ts[v];
      const engine = e === undefined ? '' : e.type === 'word' ? e.text : e.type === 'quoted' ? e.text.toUpperCase() : '';
      if (NON_TRANSACTIONAL_ENGINES.has(engine)) {
        report.unsafe.push({
          construct: `ENGINE=${engine}`,
          reason: `${engine} is not transactional: a write cannot be rolled back, so when quorum is lost the leader keeps a change the cluster never committed`,
          workaround: 'use ENGINE=InnoDB',
        });
      }
    } else if (word === 'DEFAULT') {
      const v = k + 1;
      let end = v + 1;
      if (isOp(ts, v, '(')) end = skipParens(ts, v);
      else if (isCall(ts, v)) end = skipParens(ts, v + 1);
      scanRange(ts, v, Math.min(end, ts.length), 'default', true, report);
      k = end - 1;
    } else if (word === 'SELECT' && selectAt < 0) {
      selectAt = k;
    }
  }
  if (selectAt >= 0) scanRange(ts, selectAt, ts.length, 'statement', true, report);
}
