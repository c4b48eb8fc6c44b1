// DDL statements: the command tag from the node type, the tables a TRUNCATE or CREATE TABLE AS
// writes, temporary objects, and what cannot run in a transaction block (the statements that
// call PreventInTransactionBlock in postgres' sources).
import type { PgStatement } from './pg-classify.js';
import { type Fields, defOption, rangeVarName, some, unwrap } from './pg-tree.js';

/** CREATE/ALTER/DROP/GRANT/...: the command tag from the node type, the object, and the rules of
 * what cannot run in a transaction block (PreventInTransactionBlock in postgres' sources). */
export function classifyDdl(st: PgStatement, type: string, f: Fields): void {
  st.kind = 'ddl';
  st.command = ddlCommand(type, f);
  switch (type) {
    case 'CreatedbStmt':
    case 'DropdbStmt':
    case 'CreateTableSpaceStmt':
    case 'DropTableSpaceStmt':
      st.noTransactionBlock = true;
      break;
    case 'AlterDatabaseStmt':
      st.noTransactionBlock = defOption(f.options, 'tablespace') !== undefined;
      break;
    case 'IndexStmt':
      st.noTransactionBlock = !!f.concurrent;
      if ((f.relation as Fields | undefined)?.relpersistence === 't') st.temporary = true;
      break;
    case 'DropStmt':
      st.noTransactionBlock = !!f.concurrent;
      break;
    case 'AlterTableStmt':
      st.noTransactionBlock = some(f.cmds, (t, x) => t === 'PartitionCmd' && !!x.concurrent);
      break;
    case 'CreateSubscriptionStmt':
      st.noTransactionBlock = defOption(f.options, 'create_slot') !== false;
      break;
    case 'DropSubscriptionStmt':
      st.noTransactionBlock = true;
      break;
    case 'AlterSubscriptionStmt':
      st.noTransactionBlock = f.kind === 'ALTER_SUBSCRIPTION_REFRESH' || f.kind === 'ALTER_SUBSCRIPTION_SET_PUBLICATION' || f.kind === 'ALTER_SUBSCRIPTION_ADD_PUBLICATION' || f.kind === 'ALTER_SUBSCRIPTION_DROP_PUBLICATION';
      break;
    case 'CreateStmt':
      if ((f.relation as Fields | undefined)?.relpersistence === 't') st.temporary = true;
      break;
    case 'CreateTableAsStmt': {
      const rel = (f.into as Fields | undefined)?.rel as Fields | undefined;
      if (rel?.relpersistence === 't') st.temporary = true;
      const name = rangeVarName(rel);
      if (name) st.tables.push(name);
      break;
    }
    case 'TruncateStmt':
      if (Array.isArray(f.relations)) {
        for (const r of f.relations) {
          const name = rangeVarName(unwrap(r)?.[1]);
          if (name) st.tables.push(name);
        }
      }
      break;
  }
}

const DDL_COMMANDS: Record<string, string> = {
  CreateStmt: 'CREATE TABLE', CreateTableAsStmt: 'CREATE TABLE AS', ViewStmt: 'CREATE VIEW', IndexStmt: 'CREATE INDEX',
  CreateSeqStmt: 'CREATE SEQUENCE', AlterSeqStmt: 'ALTER SEQUENCE', CreateSchemaStmt: 'CREATE SCHEMA', CreatedbStmt: 'CREATE DATABASE',
  DropdbStmt: 'DROP DATABASE', AlterDatabaseStmt: 'ALTER DATABASE', AlterDatabaseSetStmt: 'ALTER DATABASE', CreateFunctionStmt: 'CREATE FUNCTION',
  AlterFunctionStmt: 'ALTER FUNCTION', CreateTrigStmt: 'CREATE TRIGGER', CreateRoleStmt: 'CREATE ROLE', AlterRoleStmt: 'ALTER ROLE',
  AlterRoleSetStmt: 'ALTER ROLE', DropRoleStmt: 'DROP ROLE', GrantStmt: 'GRANT', GrantRoleStmt: 'GRANT', TruncateStmt: 'TRUNCATE TABLE',
  CommentStmt: 'COMMENT', SecLabelStmt: 'SECURITY LABEL', RenameStmt: 'ALTER', AlterOwnerStmt: 'ALTER', AlterObjectSchemaStmt: 'ALTER',
  CreateExtensionStmt: 'CREATE EXTENSION', AlterExtensionStmt: 'ALTER EXTENSION', CreateTableSpaceStmt: 'CREATE TABLESPACE',
  DropTableSpaceStmt: 'DROP TABLESPACE', RuleStmt: 'CREATE RULE', CompositeTypeStmt: 'CREATE TYPE', CreateEnumStmt: 'CREATE TYPE',
  CreateRangeStmt: 'CREATE TYPE', AlterEnumStmt: 'ALTER TYPE', CreateDomainStmt: 'CREATE DOMAIN', AlterDomainStmt: 'ALTER DOMAIN',
  DefineStmt: 'CREATE', RefreshMatViewStmt: 'REFRESH MATERIALIZED VIEW', CreatePolicyStmt: 'CREATE POLICY', AlterPolicyStmt: 'ALTER POLICY',
  CreatePublicationStmt: 'CREATE PUBLICATION', AlterPublicationStmt: 'ALTER PUBLICATION', CreateSubscriptionStmt: 'CREATE SUBSCRIPTION',
  AlterSubscriptionStmt: 'ALTER SUBSCRIPTION', DropSubscriptionStmt: 'DROP SUBSCRIPTION', AlterDefaultPrivilegesStmt: 'ALTER DEFAULT PRIVILEGES',
  CreateEventTrigStmt: 'CREATE EVENT TRIGGER', CreateStatsStmt: 'CREATE STATISTICS', ReassignOwnedStmt: 'REASSIGN OWNED',
  DropOwnedStmt: 'DROP OWNED', AlterTableSpaceOptionsStmt: 'ALTER TABLESPACE', ImportForeignSchemaStmt: 'IMPORT FOREIGN SCHEMA',
  CreateForeignTableStmt: 'CREATE FOREIGN TABLE', CreateCastStmt: 'CREATE CAST', CreateConversionStmt: 'CREATE CONVERSION',
  CreateOpClassStmt: 'CREATE OPERATOR CLASS', CreateTransformStmt: 'CREATE TRANSFORM', CreateAmStmt: 'CREATE ACCESS METHOD',
  CreatePLangStmt: 'CREATE LANGUAGE', AlterCollationStmt: 'ALTER COLLATION', AlterTypeStmt: 'ALTER TYPE', AlterOperatorStmt: 'ALTER OPERATOR',
  CreateFdwStmt: 'CREATE FOREIGN DATA WRAPPER', CreateForeignServerStmt: 'CREATE SERVER', CreateUserMappingStmt: 'CREATE USER MAPPING',
};

function ddlCommand(type: string, f: Fields): string {
  if (type === 'DropStmt') return `DROP ${objectWord(f.removeType)}`;
  if (type === 'AlterTableStmt') return `ALTER ${objectWord(f.objtype)}`;
  if (type === 'CreateTableAsStmt' && f.objtype === 'OBJECT_MATVIEW') return 'CREATE MATERIALIZED VIEW';
  if (type === 'GrantStmt' && !f.is_grant) return 'REVOKE';
  if (type === 'GrantRoleStmt' && !f.is_grant) return 'REVOKE';
  return DDL_COMMANDS[type] ?? type.replace(/Stmt$/, '').replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase();
}

function objectWord(objtype: unknown): string {
  return String(objtype ?? 'OBJECT_TABLE').replace(/^OBJECT_/, '').replace(/_/g, ' ');
}
