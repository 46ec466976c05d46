// Contract checks: documents written by librechat-operator, judged by LibreChat's own
// published code (@librechat/data-schemas 0.0.71 + mongoose 8.24.1, bcryptjs 2.4.3, keyv 5.5.2).
//
// This module is read-only towards the database: it never writes, never builds indexes,
// never creates collections, and its Keyv store cannot delete (Keyv's get() deletes
// expired entries in LibreChat; here that delete is a no-op).

import { isDeepStrictEqual } from 'node:util';
import os from 'node:os';
import path from 'node:path';

// ---------------------------------------------------------------------------------------
// Environment for @librechat/data-schemas. Must be set before the package is imported:
// - it imports 'dotenv/config' (loads ./.env of the cwd): point it at an empty file so a
//   stray .env cannot change behaviour;
// - its winston loggers write daily log files under ./logs of the cwd unless
//   LOG_TO_FILE=false, and print to stdout unless CONSOLE_LOG_LEVEL=silent;
// - TENANT_ISOLATION_STRICT=true would make every query without a tenant context throw:
//   the operator targets single-tenant deployments, so it is removed;
// - SEARCH/MEILI_* would enable the Meilisearch plugin on messages/conversations.
// ---------------------------------------------------------------------------------------
process.env.DOTENV_CONFIG_PATH ??= os.devNull;
process.env.LOG_TO_FILE ??= 'false';
process.env.LIBRECHAT_LOG_DIR ??= path.join(os.tmpdir(), 'librechat-contract-logs');
process.env.CONSOLE_LOG_LEVEL ??= 'silent';
delete process.env.TENANT_ISOLATION_STRICT;
delete process.env.SEARCH;

const { default: mongoose } = await import('mongoose');
const ds = await import('@librechat/data-schemas');
const { default: bcrypt } = await import('bcryptjs');
const { Keyv } = await import('keyv');
const { defaultDeserialize } = await import('@keyv/serialize');

export { mongoose, ds };

export const DEFAULT_DB_NAME = 'LibreChat';

/**
 * Deletion table: collection -> [field, BSON type stored by LibreChat, extra filter?]: the
 * user's own documents, all deleted by LibreChat's HTTP account deletion (contract §6, surface
 * §8). Agents, prompt groups (+ prompts), skills (+ files) and MCP servers are not here: only
 * the sole-owned ones go, see SHARED_RESOURCES. Nor skill sync, which surface §8 lists: its
 * schemas (skillSyncCredential.ts, skillSyncStatus.ts) make a credential the deployment's
 * (createdBy is an audit field) and a status's `owner` a repository owner, not an account.
 */
export const DELETION_TABLE = [
  ['actions', 'user', 'ObjectId'],
  ['agentapikeys', 'userId', 'ObjectId'],
  ['assistants', 'user', 'ObjectId'],
  ['balances', 'user', 'ObjectId'],
  ['conversationtags', 'user', 'String'],
  ['conversations', 'user', 'String'],
  ['messages', 'user', 'String'],
  ['files', 'user', 'ObjectId'],
  ['keys', 'userId', 'ObjectId'],
  ['memoryentries', 'userId', 'ObjectId'],
  ['pluginauths', 'userId', 'String'],
  ['presets', 'user', 'String'],
  ['sessions', 'user', 'ObjectId'],
  ['sharedlinks', 'user', 'String'],
  ['toolcalls', 'user', 'ObjectId'],
  ['tokens', 'userId', 'ObjectId'],
  ['agentqueuedturns', 'user', 'ObjectId'],
  ['agentqueuedturnsequences', 'user', 'ObjectId'],
  ['schedules', 'user', 'ObjectId'],
  ['scheduleruns', 'user', 'ObjectId'],
  ['chatprojects', 'user', 'String'],
  ['toolfavorites', 'user', 'ObjectId'],
  ['refreshtokenbridges', 'userId', 'String'],
  ['openidrefreshflights', 'ownerId', 'String'],
  ['agenttriggerdeliveries', 'user', 'ObjectId'],
  ['agenttriggerlanesequences', 'user', 'ObjectId'],
  ['configs', 'principalId', 'String', { principalType: 'user' }],
  ['systemgrants', 'principalId', 'ObjectId', { principalType: 'user' }], // Mixed; normalised to ObjectId
  ['aclentries', 'principalId', 'ObjectId'], // schema type is Mixed; LibreChat stores ObjectId
  ['transactions', 'user', 'ObjectId'], // only checked with transactionsDeleted: true
];

/**
 * Shareable resources: collection -> [ACL resourceTypes, [collection, field] of their parts,
 * whether LibreChat also deletes the ones a user authored that have no ACL entry at all].
 */
export const SHARED_RESOURCES = [
  ['agents', ['agent', 'remoteAgent'], null, true],
  ['promptgroups', ['promptGroup'], ['prompts', 'groupId'], true],
  ['skills', ['skill'], ['skillfiles', 'skillId'], false],
  ['mcpservers', ['mcpServer'], null, false],
];

/** PermissionBits.DELETE: the bit that makes an ACL entry an owner's. */
const DELETE_BIT = 4;

/**
 * After a deletion nothing may point at a deleted resource: ACL entries, other users'
 * favorites, prompts and skill files of a group or skill that is gone.
 */
async function checkNoDanglingReferences(db, add, guard, subject) {
  const ids = async (coll, field = '_id') => new Set((await db.collection(coll).distinct(field)).map(String));
  for (const [coll, types, part] of SHARED_RESOURCES) {
    const present = await ids(coll);
    const name = `${subject}: no ACL entry on a missing ${coll} document`;
    await guard(name, async () => {
      const refs = await db.collection('aclentries').distinct('resourceId', { resourceType: { $in: types } });
      const missing = refs.map(String).filter((id) => !present.has(id));
      add(missing.length === 0, name, `entries on ${missing.join(', ')}`);
    });
    if (!part) continue;
    const partName = `${subject}: no ${part[0]} of a missing ${coll} document`;
    await guard(partName, async () => {
      const refs = await db.collection(part[0]).distinct(part[1]);
      const missing = refs.map(String).filter((id) => !present.has(id));
      add(missing.length === 0, partName, `${part[1]} ${missing.join(', ')}`);
    });
  }
  const agents = await ids('agents', 'id');
  // Read and flattened here rather than with distinct() on array paths, which not every
  // MongoDB-wire server flattens. An edge endpoint is an id or a list of ids.
  const named = async (coll, list, key) =>
    (await db.collection(coll).find({ [list]: { $exists: true } }, { projection: { [list]: 1 } }).toArray())
      .flatMap((d) => (Array.isArray(d[list]) ? d[list] : []))
      .flatMap((item) => [item?.[key]].flat());
  for (const [coll, list, key] of [['users', 'favorites', 'agentId'], ['agents', 'edges', 'from'], ['agents', 'edges', 'to']]) {
    const name = `${subject}: no ${coll} ${list}.${key} names a missing agent`;
    await guard(name, async () => {
      const missing = (await named(coll, list, key)).filter((id) => typeof id === 'string' && !agents.has(id));
      add(missing.length === 0, name, `names ${missing.join(', ')}`);
    });
  }
}

/** SSO id fields of the User schema: must never be stored as null (unique partial indexes). */
export const SSO_ID_FIELDS = [
  'googleId',
  'facebookId',
  'openidId',
  'openidIssuer',
  'samlId',
  'ldapId',
  'githubId',
  'discordId',
  'appleId',
];

const HEX24 = /^[0-9a-fA-F]{24}$/;
const SECRET_KEY = /pass|token|secret|hash|backup|totp/i;

// ---------------------------------------------------------------------------------------
// URI helpers
// ---------------------------------------------------------------------------------------

/** Database name from the URI path ("mongodb://h:1/NAME?x"), default "LibreChat". */
export function dbNameFromUri(uri) {
  const m = /^mongodb(?:\+srv)?:\/\/[^/?]*\/([^?]*)/.exec(uri);
  const name = m ? decodeURIComponent(m[1]) : '';
  return name || DEFAULT_DB_NAME;
}

/** The same URI with its database path replaced by `name`. */
export function withDbName(uri, name) {
  const m = /^(mongodb(?:\+srv)?:\/\/[^/?]*)(?:\/[^?]*)?(\?.*)?$/.exec(uri);
  if (!m) throw new Error('not a mongodb:// URI');
  return `${m[1]}/${encodeURIComponent(name)}${m[2] ?? ''}`;
}

/** URI with any password removed, for messages. */
export function redactUri(uri) {
  return String(uri).replace(/\/\/([^@/]*)@/, (_, cred) => `//${cred.split(':')[0]}:***@`);
}

// ---------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------

let opened = null;

/**
 * Connects mongoose and builds LibreChat's models and methods on it.
 * Returns { mongoose, models, methods, db, dbName, close }.
 */
export async function openContract(uri, { dbName, serverSelectionTimeoutMS } = {}) {
  if (opened) throw new Error('openContract: already open');
  mongoose.set('strictQuery', true); // as LibreChat's api/db/connect.js
  mongoose.set('autoIndex', false); // read-only: never build indexes in the checked database
  mongoose.set('autoCreate', false); // ... nor create collections
  const models = mongoose.models.User ? mongoose.models : ds.createModels(mongoose);
  const methods = ds.createMethods(mongoose);
  const name = dbName ?? dbNameFromUri(uri);
  await mongoose.connect(uri, {
    dbName: name,
    serverSelectionTimeoutMS:
      serverSelectionTimeoutMS ?? Number(process.env.CONTRACT_SERVER_SELECTION_TIMEOUT_MS || 10000),
  });
  const db = mongoose.connection.db;
  await db.command({ ping: 1 });
  opened = {
    mongoose,
    models,
    methods,
    db,
    dbName: name,
    async close() {
      opened = null;
      await mongoose.disconnect();
    },
  };
  return opened;
}

// ---------------------------------------------------------------------------------------
// Expectations file
// ---------------------------------------------------------------------------------------

export class ExpectationError extends Error {}

function fail(msg) {
  throw new ExpectationError(msg);
}

function isObj(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Validates the shape of an expectations object; throws ExpectationError. */
export function validateExpectations(e) {
  if (!isObj(e)) fail('expectations must be a JSON object');
  const sections = [
    'users', 'absentUsers', 'sessionsRevoked', 'sessionsPresent', 'invites', 'bans',
    'verifications', 'twoFactorDisabled', 'balances', 'creditTransactions', 'pluginAuths',
    'groups', 'principals', 'roles', 'aclEntries', 'roleMembers',
  ];
  for (const k of Object.keys(e)) {
    if (!sections.includes(k)) fail(`unknown section "${k}" (allowed: ${sections.join(', ')})`);
    if (!Array.isArray(e[k])) fail(`"${k}" must be an array`);
  }
  (e.users ?? []).forEach((u, i) => {
    const at = `users[${i}]`;
    if (!isObj(u)) fail(`${at} must be an object`);
    if (typeof u.email !== 'string' || !u.email.trim()) fail(`${at}.email must be a non-empty string`);
    if ('password' in u && u.password !== null && typeof u.password !== 'string')
      fail(`${at}.password must be a string or null`);
  });
  (e.absentUsers ?? []).forEach((u, i) => {
    const at = `absentUsers[${i}]`;
    if (!isObj(u)) fail(`${at} must be an object`);
    for (const k of Object.keys(u))
      if (!['email', 'userId', 'transactionsDeleted'].includes(k)) fail(`${at}: unknown field "${k}"`);
    if (u.email === undefined && u.userId === undefined) fail(`${at} needs email and/or userId`);
    if (u.email !== undefined && (typeof u.email !== 'string' || !u.email.trim()))
      fail(`${at}.email must be a non-empty string`);
    if (u.userId !== undefined && (typeof u.userId !== 'string' || !HEX24.test(u.userId)))
      fail(`${at}.userId must be a 24-digit hex ObjectId`);
    if (u.transactionsDeleted !== undefined && typeof u.transactionsDeleted !== 'boolean')
      fail(`${at}.transactionsDeleted must be a boolean`);
  });
  for (const s of ['sessionsRevoked', 'sessionsPresent'])
    (e[s] ?? []).forEach((id, i) => {
      if (typeof id !== 'string' || !HEX24.test(id)) fail(`${s}[${i}] must be a 24-digit hex ObjectId`);
    });
  (e.invites ?? []).forEach((v, i) => {
    const at = `invites[${i}]`;
    if (!isObj(v)) fail(`${at} must be an object`);
    for (const k of Object.keys(v))
      if (!['rawToken', 'email', 'expectFound'].includes(k)) fail(`${at}: unknown field "${k}"`);
    if (typeof v.rawToken !== 'string' || !v.rawToken) fail(`${at}.rawToken must be a non-empty string`);
    if (typeof v.email !== 'string' || !v.email.trim()) fail(`${at}.email must be a non-empty string`);
    if (typeof v.expectFound !== 'boolean') fail(`${at}.expectFound must be a boolean`);
  });
  (e.verifications ?? []).forEach((v, i) => {
    const at = `verifications[${i}]`;
    if (!isObj(v)) fail(`${at} must be an object`);
    for (const k of Object.keys(v))
      if (!['email', 'rawToken', 'expectValid'].includes(k)) fail(`${at}: unknown field "${k}"`);
    if (typeof v.email !== 'string' || !v.email.trim()) fail(`${at}.email must be a non-empty string`);
    if (typeof v.rawToken !== 'string' || !v.rawToken) fail(`${at}.rawToken must be a non-empty string`);
    if (typeof v.expectValid !== 'boolean') fail(`${at}.expectValid must be a boolean`);
  });
  (e.twoFactorDisabled ?? []).forEach((email, i) => {
    if (typeof email !== 'string' || !email.trim()) fail(`twoFactorDisabled[${i}] must be an email`);
  });
  (e.bans ?? []).forEach((b, i) => {
    const at = `bans[${i}]`;
    if (!isObj(b)) fail(`${at} must be an object`);
    for (const k of Object.keys(b))
      if (!['key', 'expectActive', 'userId'].includes(k)) fail(`${at}: unknown field "${k}"`);
    if (typeof b.key !== 'string' || !/^BANS:.+/.test(b.key)) fail(`${at}.key must be "BANS:<userId hex or ip>"`);
    if (typeof b.expectActive !== 'boolean') fail(`${at}.expectActive must be a boolean`);
    if (b.userId !== undefined && (typeof b.userId !== 'string' || !HEX24.test(b.userId)))
      fail(`${at}.userId must be a 24-digit hex ObjectId`);
  });
  (e.balances ?? []).forEach((b, i) => {
    const at = `balances[${i}]`;
    if (!isObj(b)) fail(`${at} must be an object`);
    for (const k of Object.keys(b))
      if (!['userId', 'tokenCredits', 'records', 'fields'].includes(k)) fail(`${at}: unknown field "${k}"`);
    if (typeof b.userId !== 'string' || !HEX24.test(b.userId)) fail(`${at}.userId must be a 24-digit hex ObjectId`);
    if (b.tokenCredits !== undefined && b.tokenCredits !== null && !Number.isFinite(b.tokenCredits))
      fail(`${at}.tokenCredits must be a number, or null for "no balance record"`);
    if (b.records !== undefined && !Number.isInteger(b.records)) fail(`${at}.records must be an integer`);
    if (b.fields !== undefined && !isObj(b.fields)) fail(`${at}.fields must be an object`);
  });
  (e.creditTransactions ?? []).forEach((t, i) => {
    const at = `creditTransactions[${i}]`;
    if (!isObj(t)) fail(`${at} must be an object`);
    for (const k of Object.keys(t))
      if (!['id', 'userId', 'rawAmount', 'context'].includes(k)) fail(`${at}: unknown field "${k}"`);
    for (const k of ['id', 'userId'])
      if (typeof t[k] !== 'string' || !HEX24.test(t[k])) fail(`${at}.${k} must be a 24-digit hex ObjectId`);
    if (!Number.isFinite(t.rawAmount)) fail(`${at}.rawAmount must be a number`);
    if (t.context !== undefined && typeof t.context !== 'string') fail(`${at}.context must be a string`);
  });
  (e.pluginAuths ?? []).forEach((a, i) => {
    const at = `pluginAuths[${i}]`;
    if (!isObj(a)) fail(`${at} must be an object`);
    for (const k of Object.keys(a))
      if (!['userId', 'pluginKey', 'authField', 'plaintext'].includes(k)) fail(`${at}: unknown field "${k}"`);
    if (typeof a.userId !== 'string' || !HEX24.test(a.userId)) fail(`${at}.userId must be a 24-digit hex ObjectId`);
    for (const k of ['pluginKey', 'authField'])
      if (typeof a[k] !== 'string' || !a[k]) fail(`${at}.${k} must be a non-empty string`);
    if (a.plaintext !== null && typeof a.plaintext !== 'string') fail(`${at}.plaintext must be a string or null`);
  });
  validateAccessExpectations(e);
  return e;
}

/** Shape rules of one access entry: its allowed fields, the ones it needs, and their kinds. */
const ACCESS_SHAPES = {
  groups: {
    fields: { id: 'hex', name: 'string', description: 'string', email: 'string', memberIds: 'strings', source: 'string', absent: 'boolean' },
    required: ['id'],
  },
  principals: {
    fields: { userId: 'hex', groups: 'hexes', notGroups: 'hexes', role: 'string' },
    required: ['userId'],
  },
  roles: {
    fields: { name: 'string', description: 'string', permissions: 'object', exact: 'boolean', absent: 'absent' },
    required: ['name'],
  },
  aclEntries: {
    fields: { principalType: 'principalType', principalId: 'string', resourceType: 'string', resourceId: 'hex', permBits: 'integer', expectFound: 'boolean' },
    required: ['principalType', 'principalId', 'resourceType', 'resourceId', 'permBits', 'expectFound'],
  },
  roleMembers: { fields: { role: 'string', userIds: 'hexes' }, required: ['role', 'userIds'] },
};

const ACCESS_KINDS = {
  hex: (v) => typeof v === 'string' && HEX24.test(v),
  hexes: (v) => Array.isArray(v) && v.every((x) => typeof x === 'string' && HEX24.test(x)),
  string: (v) => typeof v === 'string',
  strings: (v) => Array.isArray(v) && v.every((x) => typeof x === 'string'),
  boolean: (v) => typeof v === 'boolean',
  absent: (v) => v === true,
  object: isObj,
  integer: Number.isInteger,
  principalType: (v) => v === 'group' || v === 'role',
};

const ACCESS_KIND_WORDS = {
  hex: 'a 24-digit hex ObjectId',
  hexes: 'a list of 24-digit hex ObjectIds',
  string: 'a string',
  strings: 'a list of strings',
  boolean: 'a boolean',
  absent: 'true (or left out)',
  object: 'an object',
  integer: 'an integer',
  principalType: '"group" or "role"',
};

function validateAccessExpectations(e) {
  for (const [section, { fields, required }] of Object.entries(ACCESS_SHAPES)) {
    (e[section] ?? []).forEach((entry, i) => {
      const at = `${section}[${i}]`;
      if (!isObj(entry)) fail(`${at} must be an object`);
      for (const [k, v] of Object.entries(entry)) {
        if (!(k in fields)) fail(`${at}: unknown field "${k}"`);
        if (!ACCESS_KINDS[fields[k]](v)) fail(`${at}.${k} must be ${ACCESS_KIND_WORDS[fields[k]]}`);
      }
      for (const k of required) if (!(k in entry)) fail(`${at}.${k} is required`);
    });
  }
}

// ---------------------------------------------------------------------------------------
// Document validation against the package's mongoose models
// ---------------------------------------------------------------------------------------

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !v._bsontype && !(v instanceof Date);
}

function bsonTypeName(v) {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (v instanceof Date) return 'Date';
  if (Array.isArray(v)) return 'Array';
  if (v._bsontype) return v._bsontype;
  return typeof v;
}

function typeMatches(instance, v) {
  switch (instance) {
    case 'ObjectId':
      return v?._bsontype === 'ObjectId';
    case 'String':
      return typeof v === 'string';
    case 'Boolean':
      return typeof v === 'boolean';
    case 'Number':
      return typeof v === 'number' || typeof v === 'bigint' || ['Int32', 'Double', 'Long'].includes(v?._bsontype);
    case 'Date':
      return v instanceof Date;
    case 'Buffer':
    case 'UUID':
      return v?._bsontype === 'Binary';
    case 'Decimal128':
      return v?._bsontype === 'Decimal128';
    case 'Array':
      return Array.isArray(v);
    case 'Embedded':
    case 'Map':
      return isPlainObject(v);
    default:
      return true; // Mixed and anything exotic
  }
}

/**
 * Walks a raw document against a mongoose schema: every stored field must exist in the
 * schema, have the BSON type the schema declares (null allowed; `required` is checked by
 * validate()), and string values must already be in the form the schema's lowercase/trim
 * setters would produce (hydrate() does not run setters, LibreChat's writes do).
 */
function walkSchema(schema, obj, base, display, problems) {
  for (const [k, v] of Object.entries(obj)) {
    const p = base + k;
    const shown = display + k;
    const st = schema.path(p);
    if (!st) {
      if (schema.pathType(p) === 'nested' && isPlainObject(v)) {
        walkSchema(schema, v, p + '.', shown + '.', problems);
      } else {
        problems.push(`unknown field "${shown}" (not in LibreChat's schema)`);
      }
      continue;
    }
    if (v === null || v === undefined) continue;
    checkValue(schema, st, p, v, shown, problems);
  }
}

function checkValue(schema, st, p, v, shown, problems) {
  if (!typeMatches(st.instance, v)) {
    problems.push(`"${shown}" is ${bsonTypeName(v)}, schema says ${st.instance}`);
    return;
  }
  if (st.instance === 'String') {
    let want = v;
    if (st.options?.trim) want = want.trim();
    if (st.options?.lowercase) want = want.toLowerCase();
    if (want !== v)
      problems.push(
        `"${shown}" is not normalized (schema setters: ${[st.options?.lowercase && 'lowercase', st.options?.trim && 'trim']
          .filter(Boolean)
          .join('+')})`,
      );
  } else if (st.instance === 'Embedded' && st.schema) {
    walkSchema(st.schema, v, '', shown + '.', problems);
  } else if (st.instance === 'Array') {
    v.forEach((el, i) => {
      if (el === null || el === undefined) return;
      if (st.$isMongooseDocumentArray && st.schema) {
        if (!isPlainObject(el)) problems.push(`"${shown}[${i}]" is ${bsonTypeName(el)}, schema says subdocument`);
        else walkSchema(st.schema, el, '', `${shown}[${i}].`, problems);
      } else {
        const inner = st.$embeddedSchemaType ?? st.caster;
        if (inner) checkValue(schema, inner, p + '.$', el, `${shown}[${i}]`, problems);
      }
    });
  } else if (st.instance === 'Map') {
    const inner = schema.path(p + '.$*');
    if (inner)
      for (const [mk, mv] of Object.entries(v))
        if (mv !== null && mv !== undefined) checkValue(schema, inner, p + '.$*', mv, `${shown}.${mk}`, problems);
  }
}

/** Raw-shape check plus hydrate() + validate() with the LibreChat model. Returns problems. */
export async function validateWithModel(Model, raw) {
  const problems = [];
  walkSchema(Model.schema, raw, '', '', problems);
  let doc;
  try {
    doc = Model.hydrate(raw);
  } catch (err) {
    problems.push(`${Model.modelName}.hydrate() failed: ${err.message}`);
    return problems;
  }
  try {
    await doc.validate();
  } catch (err) {
    if (err?.errors) {
      for (const [p, e] of Object.entries(err.errors)) problems.push(`validate(): ${p}: ${redactSecrets(p, e.message)}`);
    } else problems.push(`validate(): ${err.message}`);
  }
  return problems;
}

function redactSecrets(p, msg) {
  // mongoose messages quote the value (e.g. minlength); never echo password material
  return SECRET_KEY.test(p) ? msg.replace(/\(`[^`]*`/g, '(`***`').replace(/value "[^"]*"/g, 'value "***"') : msg;
}

// ---------------------------------------------------------------------------------------
// Comparing expected JSON values with stored BSON values
// ---------------------------------------------------------------------------------------

function toJsonish(v) {
  if (v === null || v === undefined) return v;
  if (v instanceof Date) return v.toISOString();
  if (v._bsontype === 'ObjectId') return v.toHexString();
  if (Array.isArray(v)) return v.map(toJsonish);
  if (typeof v === 'object' && !v._bsontype) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJsonish(x)]));
  return v;
}

function sameValue(expected, stored) {
  if (stored instanceof Date && typeof expected === 'number') return stored.getTime() === expected;
  if (stored instanceof Date && typeof expected === 'string') return stored.getTime() === Date.parse(expected);
  return isDeepStrictEqual(toJsonish(stored), expected);
}

function show(key, v) {
  if (SECRET_KEY.test(key)) return '<redacted>';
  if (v === undefined) return '<missing>';
  const s = JSON.stringify(toJsonish(v));
  return s.length > 120 ? s.slice(0, 117) + '...' : s;
}

// ---------------------------------------------------------------------------------------
// Keyv (bans)
// ---------------------------------------------------------------------------------------

/**
 * A read-only version of LibreChat's KeyvMongoCustom (packages/api/src/cache/keyvMongo.ts):
 * get(key) = logs.findOne({key: {$eq: key}})?.value. Writes and deletes are no-ops so that
 * Keyv's lazy expiry (delete on read) cannot change the database under test.
 */
class ReadOnlyLogsStore {
  constructor(collection) {
    this.collection = collection;
    this.namespace = undefined;
    this.ttlSupport = false;
    this.opts = {};
  }
  async get(key) {
    const doc = await this.collection.findOne({ key: { $eq: key } });
    return doc ? doc.value : undefined;
  }
  async set() {}
  async delete() {
    return false;
  }
  async clear() {}
  on() {
    return this;
  }
}

function makeKeyv(db, namespace) {
  // throwOnErrors: a store failure must not look like "no ban"
  return new Keyv({ store: new ReadOnlyLogsStore(db.collection('logs')), namespace, throwOnErrors: true });
}

/** checkBan's judgement of a BANS value: missing/NaN expiresAt = banned indefinitely. */
function innerActive(value, now) {
  if (!value) return { active: false, why: 'empty value' };
  const exp = Number(value.expiresAt);
  if (value.expiresAt === undefined || value.expiresAt === null || Number.isNaN(exp))
    return { active: true, why: 'value.expiresAt missing: banned indefinitely' };
  if (exp > now) return { active: true, why: `value.expiresAt ${new Date(exp).toISOString()} is in the future` };
  return { active: false, why: `value.expiresAt ${new Date(exp).toISOString()} has passed` };
}

// ---------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------

/**
 * Runs every check of `expectations` against the open contract context.
 * Returns [{ ok: boolean, name: string, reason?: string }].
 */
export async function runChecks(ctx, expectations) {
  validateExpectations(expectations);
  const { models, methods, db } = ctx;
  const results = [];
  const add = (ok, name, reason) => results.push(ok ? { ok: true, name } : { ok: false, name, reason });
  const guard = async (name, fn) => {
    try {
      await fn();
    } catch (err) {
      add(false, name, `error: ${err?.message ?? err}`);
    }
  };
  const oid = (hex) => new mongoose.Types.ObjectId(hex);

  // ----- users -----------------------------------------------------------------------
  for (const exp of expectations.users ?? []) {
    const normalized = exp.email.trim().toLowerCase();
    const subject = `user ${normalized}`;
    let found = null;
    await guard(`${subject}: findUser(${JSON.stringify(exp.email)}) finds it`, async () => {
      found = await methods.findUser({ email: exp.email }, '+password');
      add(!!found, `${subject}: findUser(${JSON.stringify(exp.email)}) finds it`, 'findUser returned null');
    });
    if (!found) continue;

    await guard(`${subject}: email is unique (countUsers)`, async () => {
      const n = await methods.countUsers({ email: normalized });
      add(n === 1, `${subject}: email is unique (countUsers)`, `countUsers({email}) = ${n}`);
    });

    const raw = await db.collection('users').findOne({ _id: found._id });
    if (!raw) {
      add(false, `${subject}: raw document readable`, 'document vanished between reads');
      continue;
    }

    await guard(`${subject}: valid against LibreChat's User model`, async () => {
      const problems = await validateWithModel(models.User, raw);
      add(problems.length === 0, `${subject}: valid against LibreChat's User model`, problems.join('; '));
    });

    {
      const bad = [];
      if ('tenantId' in raw) bad.push('tenantId is set (single-tenant documents must not carry it)');
      for (const f of SSO_ID_FIELDS) if (f in raw && raw[f] === null) bad.push(`${f} is null (unique partial index treats null as present)`);
      if ('expiresAt' in raw) bad.push('expiresAt is set (unverified-user TTL would delete the account)');
      add(bad.length === 0, `${subject}: no forbidden fields`, bad.join('; '));
    }

    if ('password' in exp) {
      if (exp.password === null) {
        add(!('password' in raw), `${subject}: has no password field`, `password field present (${bsonTypeName(raw.password)})`);
      } else {
        await guard(`${subject}: password matches (bcryptjs.compare)`, async () => {
          const hash = raw.password;
          let ok = false;
          let reason = 'bcryptjs.compare returned false';
          if (typeof hash !== 'string') reason = `stored password is ${bsonTypeName(hash)}`;
          else if (!/^\$2[aby]\$\d\d\$/.test(hash)) reason = 'stored password is not a bcrypt hash';
          else ok = await bcrypt.compare(exp.password, hash);
          add(ok, `${subject}: password matches (bcryptjs.compare)`, reason);
        });
      }
    }

    for (const [key, want] of Object.entries(exp)) {
      if (key === 'email' || key === 'password') continue;
      const have = raw[key];
      add(
        have !== undefined && sameValue(want, have),
        `${subject}: ${key} = ${show(key, want)}`,
        `stored ${key} is ${show(key, have)}`,
      );
    }
  }

  // ----- absent users ----------------------------------------------------------------
  const absent = expectations.absentUsers ?? [];
  if (absent.some((a) => a.userId)) {
    // The table above must agree with the package's own schemas.
    const byColl = new Map(Object.values(models).map((m) => [m.collection.collectionName, m]));
    const bad = [];
    for (const [coll, field, type] of DELETION_TABLE) {
      const st = byColl.get(coll)?.schema.path(field);
      const inst = st?.instance;
      if (!st) bad.push(`${coll}.${field}: no such schema path`);
      else if (inst !== type && !(inst === 'Mixed' && ['aclentries', 'systemgrants'].includes(coll))) bad.push(`${coll}.${field}: schema ${inst}, table ${type}`);
    }
    for (const [coll, , part] of SHARED_RESOURCES) {
      if (!byColl.get(coll)?.schema.path('author')) bad.push(`${coll}.author: no such schema path`);
      if (part && byColl.get(part[0])?.schema.path(part[1])?.instance !== 'ObjectId') bad.push(`${part.join('.')}: not an ObjectId`);
    }
    const gm = byColl.get('groups')?.schema.path('memberIds');
    if (gm?.$embeddedSchemaType?.instance !== 'String') bad.push('groups.memberIds is not [String]');
    add(bad.length === 0, 'deletion table agrees with LibreChat schemas', bad.join('; '));
  }
  for (const exp of absent) {
    const subject = `absent user ${exp.userId ?? ''}${exp.userId && exp.email ? ' ' : ''}${exp.email ? exp.email.trim().toLowerCase() : ''}`;
    if (exp.email !== undefined) {
      await guard(`${subject}: findUser finds nothing`, async () => {
        const u = await methods.findUser({ email: exp.email }, '_id');
        add(!u, `${subject}: findUser finds nothing`, `findUser found _id ${u?._id}`);
      });
    }
    if (exp.userId === undefined) continue;
    await guard(`${subject}: getUserById finds nothing`, async () => {
      const u = await methods.getUserById(exp.userId, '_id');
      add(!u, `${subject}: getUserById finds nothing`, 'getUserById found the user');
    });
    for (const [coll, field, type, extra] of DELETION_TABLE) {
      if (coll === 'transactions' && exp.transactionsDeleted !== true) continue;
      const value = type === 'ObjectId' ? oid(exp.userId) : exp.userId;
      const name = `${subject}: no ${coll} with ${field} = ${type}(${exp.userId})${extra ? ` and ${JSON.stringify(extra)}` : ''}`;
      await guard(name, async () => {
        const n = await db.collection(coll).countDocuments({ [field]: { $eq: value }, ...extra });
        add(n === 0, name, `${n} document(s) left`);
      });
    }
    // What the user authored may survive only when another principal owns it (LibreChat's
    // deleteUserAgents/deleteUserPrompts/deleteUserSkills keep co-owned resources).
    for (const [coll, types, , legacy] of SHARED_RESOURCES) {
      if (!legacy) continue;
      const name = `${subject}: every ${coll} document they authored that survives has another owner`;
      await guard(name, async () => {
        const authored = await db.collection(coll).find({ author: oid(exp.userId) }, { projection: { _id: 1 } }).toArray();
        const orphans = [];
        for (const { _id } of authored) {
          const owners = await db.collection('aclentries').countDocuments({ resourceType: { $in: types }, resourceId: _id, permBits: { $bitsAllSet: DELETE_BIT } });
          if (owners === 0) orphans.push(String(_id));
        }
        add(orphans.length === 0, name, `owned by nobody: ${orphans.join(', ')}`);
      });
    }
    await checkNoDanglingReferences(db, add, guard, subject);
    const name = `${subject}: no groups with memberIds containing "${exp.userId}"`;
    await guard(name, async () => {
      const n = await db.collection('groups').countDocuments({ memberIds: exp.userId });
      add(n === 0, name, `${n} group(s) still list the user`);
    });
  }

  // ----- sessions --------------------------------------------------------------------
  for (const id of expectations.sessionsRevoked ?? []) {
    const subject = `sessions of ${id}`;
    await guard(`${subject}: findSession finds no live session`, async () => {
      const s = await methods.findSession({ userId: id });
      add(!s, `${subject}: findSession finds no live session`, `findSession found session ${s?._id}`);
    });
    await guard(`${subject}: no session documents left`, async () => {
      const n = await models.Session.countDocuments({ user: oid(id) });
      add(n === 0, `${subject}: no session documents left`, `${n} session document(s) with user ObjectId(${id})`);
    });
  }
  for (const id of expectations.sessionsPresent ?? []) {
    const subject = `sessions of ${id}`;
    await guard(`${subject}: findSession finds a live session`, async () => {
      const s = await methods.findSession({ userId: id });
      add(!!s, `${subject}: findSession finds a live session`, 'findSession returned null (none, expired, or user not stored as ObjectId)');
    });
    await guard(`${subject}: session documents valid against LibreChat's Session model`, async () => {
      const docs = await db.collection('sessions').find({ user: oid(id) }).toArray();
      const problems = [];
      for (const d of docs) for (const p of await validateWithModel(models.Session, d)) problems.push(`${d._id}: ${p}`);
      add(
        docs.length > 0 && problems.length === 0,
        `${subject}: session documents valid against LibreChat's Session model`,
        docs.length === 0 ? 'no session documents' : problems.join('; '),
      );
    });
  }

  // ----- invites ---------------------------------------------------------------------
  for (const exp of expectations.invites ?? []) {
    const email = exp.email.trim().toLowerCase();
    const subject = `invite for ${email}`;
    const name = `${subject}: getInvite ${exp.expectFound ? 'finds' : 'does not find'} it`;
    let tokenDoc = null;
    await guard(name, async () => {
      let decoded = null;
      try {
        decoded = decodeURIComponent(exp.rawToken);
      } catch {
        decoded = null; // LibreChat's getInvite throws -> "Invalid invite token"
      }
      if (decoded !== null) {
        const hash = await ds.hashToken(decoded);
        tokenDoc = await methods.findToken({ token: hash, email });
      }
      add(
        !!tokenDoc === exp.expectFound,
        name,
        exp.expectFound
          ? decoded === null
            ? 'raw token is not valid URI encoding'
            : 'findToken({token: sha256(raw), email}) returned null'
          : `findToken found token document ${tokenDoc?._id}`,
      );
    });
    if (!tokenDoc || !exp.expectFound) continue;
    const raw = await db.collection('tokens').findOne({ _id: tokenDoc._id });
    await guard(`${subject}: valid against LibreChat's Token model`, async () => {
      const problems = await validateWithModel(models.Token, raw);
      add(problems.length === 0, `${subject}: valid against LibreChat's Token model`, problems.join('; '));
    });
    {
      const bad = [];
      if ('type' in raw) bad.push(`type is set (createInvite writes none)`);
      if ('identifier' in raw) bad.push(`identifier is set (createInvite writes none)`);
      if ('tenantId' in raw) bad.push('tenantId is set');
      if (raw.expiresAt instanceof Date && raw.expiresAt.getTime() <= Date.now())
        bad.push(`expiresAt ${raw.expiresAt.toISOString()} has passed (the TTL monitor deletes it)`);
      add(bad.length === 0, `${subject}: shaped like createInvite's token`, bad.join('; '));
    }
  }

  // ----- email verification links ----------------------------------------------------
  // LibreChat's verifyEmail: findUser by the decoded email, the newest typed token of that
  // user and email, the same user id, bcrypt compareSync of the raw token.
  for (const exp of expectations.verifications ?? []) {
    const email = exp.email.trim().toLowerCase();
    const name = `verification link for ${email}: verifyEmail ${exp.expectValid ? 'accepts' : 'refuses'} it`;
    await guard(name, async () => {
      const user = await methods.findUser({ email: decodeURIComponent(email) }, 'email _id emailVerified');
      let why = 'findUser returned null';
      let valid = false;
      if (user) {
        const token = await methods.findToken(
          { userId: user._id, email, type: 'email_verification' },
          { sort: { createdAt: -1 } },
        );
        why = 'no email_verification token for the user';
        if (token) {
          const raw = await db.collection('tokens').findOne({ _id: token._id });
          const problems = await validateWithModel(models.Token, raw);
          valid = String(token.userId) === String(user._id) && bcrypt.compareSync(exp.rawToken, token.token);
          why = problems.length ? `Token model: ${problems.join('; ')}` : 'bcrypt compare or user id mismatch';
          if (problems.length) valid = false;
        }
      }
      add(valid === exp.expectValid, name, why);
    });
  }

  // ----- two-factor authentication, as disable2FA leaves it -----------------------------
  for (const email of expectations.twoFactorDisabled ?? []) {
    const name = `2FA of ${email.trim().toLowerCase()} reads as disabled`;
    await guard(name, async () => {
      const user = await methods.findUser({ email }, '+totpSecret +backupCodes');
      const bad = [];
      if (!user) bad.push('findUser returned null');
      else {
        if (user.twoFactorEnabled !== false) bad.push(`twoFactorEnabled is ${user.twoFactorEnabled}`);
        if (user.totpSecret) bad.push('totpSecret is set');
        if ((user.backupCodes ?? []).length) bad.push('backupCodes remain');
        if (user.pendingTotpSecret) bad.push('pendingTotpSecret is set');
        if ((user.pendingBackupCodes ?? []).length) bad.push('pendingBackupCodes remain');
      }
      add(bad.length === 0, name, bad.join('; '));
    });
  }

  // ----- bans ------------------------------------------------------------------------
  if ((expectations.bans ?? []).length) {
    const bans = makeKeyv(db, 'BANS');
    const banCache = makeKeyv(db, 'ban');
    const logs = db.collection('logs');
    for (const exp of expectations.bans) {
      const id = exp.key.slice('BANS:'.length);
      const subject = `ban ${exp.key}`;
      const now = Date.now();
      const rawDoc = await logs.findOne({ key: { $eq: exp.key } });

      if (rawDoc) {
        const bad = [];
        for (const k of Object.keys(rawDoc))
          if (!['_id', 'key', 'value', 'expiresAt'].includes(k)) bad.push(`unexpected field "${k}"`);
        if (typeof rawDoc.value !== 'string') bad.push(`value is ${bsonTypeName(rawDoc.value)}, KeyvMongo stores a String`);
        if (!(rawDoc.expiresAt === null || rawDoc.expiresAt instanceof Date))
          bad.push(`expiresAt is ${bsonTypeName(rawDoc.expiresAt)}, KeyvMongo stores Date or null`);
        let envelope;
        if (typeof rawDoc.value === 'string') {
          try {
            envelope = defaultDeserialize(rawDoc.value);
          } catch (err) {
            bad.push(`value is not a Keyv envelope (${err.message})`);
          }
        }
        if (envelope !== undefined) {
          if (!isObj(envelope) || !('value' in envelope)) bad.push('value is not a Keyv envelope {value, expires}');
          else {
            if (envelope.expires !== undefined && envelope.expires !== null && typeof envelope.expires !== 'number')
              bad.push('envelope expires is not a number');
            if (!isObj(envelope.value)) bad.push('ban value is not an object');
            const hasTtl = typeof envelope.expires === 'number';
            if (hasTtl !== rawDoc.expiresAt instanceof Date)
              bad.push(`document expiresAt (${bsonTypeName(rawDoc.expiresAt)}) disagrees with envelope expires (${hasTtl ? 'set' : 'unset'})`);
            else if (hasTtl && Math.abs(rawDoc.expiresAt.getTime() - envelope.expires) > 60_000)
              bad.push('document expiresAt and envelope expires differ by more than 60 s');
            if (exp.userId !== undefined && envelope.value?.user_id !== exp.userId)
              bad.push(`value.user_id is ${show('user_id', envelope.value?.user_id)}, expected "${exp.userId}"`);
          }
        }
        add(bad.length === 0, `${subject}: logs document shaped like KeyvMongo + Keyv 5 wrote it`, bad.join('; '));
      }

      // LibreChat's read: new Keyv({store: keyvMongo, namespace: 'BANS'}).get(id)
      let value;
      let readOk = true;
      await guard(`${subject}: readable through Keyv (namespace BANS)`, async () => {
        try {
          value = await bans.get(id);
        } catch (err) {
          readOk = false;
          throw err;
        }
      });
      if (!readOk) continue;
      let active;
      let why;
      if (value === undefined || value === null) {
        active = false;
        why = rawDoc ? 'Keyv envelope expired (Keyv.get returns undefined)' : 'no logs document with that key';
      } else {
        ({ active, why } = innerActive(value, now));
        if (active) why = `envelope live, ${why}`;
      }
      add(active === exp.expectActive, `${subject}: ${exp.expectActive ? 'active' : 'not active'} as checkBan judges it`, why);

      if (!exp.expectActive) {
        // checkBan first consults its own cache (namespace 'ban'); any truthy entry blocks.
        const cacheKeys = [id, `ban_cache:user:${id}`, `ban_cache:ip:${id}`];
        const live = [];
        for (const k of cacheKeys) if (await banCache.get(k)) live.push(`ban:${k}`);
        add(live.length === 0, `${subject}: no live checkBan cache entry for "${id}"`, `live: ${live.join(', ')}`);
        if (HEX24.test(id)) {
          // IP copies of a user's ban are only findable by the user_id inside their value
          const named = [];
          const docs = await logs.find({ key: { $regex: '^(BANS|ban):' } }).toArray();
          for (const d of docs) {
            if (d.key === exp.key || typeof d.value !== 'string') continue;
            let env;
            try {
              env = defaultDeserialize(d.value);
            } catch {
              continue;
            }
            const live = !(typeof env?.expires === 'number' && now > env.expires);
            if (live && env?.value?.user_id === id) named.push(d.key);
          }
          add(named.length === 0, `${subject}: no other live ban entry naming user ${id}`, `live: ${named.join(', ')}`);
        }
      }
    }
  }

  await checkBalances(ctx, expectations.balances ?? [], add, guard);
  await checkCreditTransactions(ctx, expectations.creditTransactions ?? [], add, guard);
  await checkPluginAuths(ctx, expectations.pluginAuths ?? [], add, guard);
  await checkGroups(ctx, expectations.groups ?? [], add, guard);
  await checkPrincipals(ctx, expectations.principals ?? [], add, guard);
  await checkRoles(ctx, expectations.roles ?? [], add, guard);
  await checkAclEntries(ctx, expectations.aclEntries ?? [], add, guard);
  await checkRoleMembers(ctx, expectations.roleMembers ?? [], add, guard);
  return results;
}

// ----- balances (contract-surface §3) ------------------------------------------------------
const BALANCE_FIELDS = ['_id', 'user', 'tokenCredits', 'autoRefillEnabled', 'refillIntervalValue', 'refillIntervalUnit', 'lastRefill', 'refillAmount', '__v'];

async function checkBalances({ models, methods, db }, expected, add, guard) {
  for (const exp of expected) {
    const subject = `balance of ${exp.userId}`;
    const user = new mongoose.Types.ObjectId(exp.userId);
    const records = await db.collection('balances').find({ user }).sort({ _id: 1 }).toArray();
    const want = exp.records ?? (exp.tokenCredits === null ? 0 : 1);
    add(records.length === want, `${subject}: ${want} record(s)`, `${records.length} record(s) with user ObjectId(${exp.userId})`);
    if ('tokenCredits' in exp) {
      await guard(`${subject}: findBalanceByUser reads ${exp.tokenCredits}`, async () => {
        const read = await methods.findBalanceByUser(exp.userId);
        const have = read ? read.tokenCredits : null;
        add(have === exp.tokenCredits, `${subject}: findBalanceByUser reads ${exp.tokenCredits}`, `it reads ${have}`);
      });
    }
    for (const raw of records) {
      const at = `${subject}: record ${raw._id}`;
      await guard(`${at} valid against LibreChat's Balance model`, async () => {
        const problems = await validateWithModel(models.Balance, raw);
        add(problems.length === 0, `${at} valid against LibreChat's Balance model`, problems.join('; '));
      });
      const bad = [];
      for (const k of BALANCE_FIELDS) if (!(k in raw)) bad.push(`${k} missing (mongoose's insert sets it)`);
      for (const k of Object.keys(raw)) if (!BALANCE_FIELDS.includes(k)) bad.push(`unexpected field "${k}" (a pending refill or grant left behind?)`);
      if (raw.__v !== 0) bad.push(`__v is ${show('__v', raw.__v)}`);
      if (!(raw.lastRefill instanceof Date)) bad.push(`lastRefill is ${bsonTypeName(raw.lastRefill)}`);
      add(bad.length === 0, `${at} shaped like LibreChat's insert`, bad.join('; '));
    }
    const oldest = records[0];
    if (oldest) {
      add(oldest._id.equals(user), `${subject}: the record LibreChat reads has _id = user id`, `its _id is ${oldest._id}`);
      for (const [key, value] of Object.entries(exp.fields ?? {}))
        add(sameValue(value, oldest[key]), `${subject}: ${key} = ${show(key, value)}`, `stored ${key} is ${show(key, oldest[key])}`);
    }
  }
}

const TRANSACTION_FIELDS = ['_id', 'user', 'tokenType', 'context', 'rawAmount', 'rate', 'tokenValue', 'createdAt', 'updatedAt', '__v'];

async function checkCreditTransactions({ models, methods, db }, expected, add, guard) {
  for (const exp of expected) {
    const subject = `credit transaction ${exp.id}`;
    const id = new mongoose.Types.ObjectId(exp.id);
    let found = [];
    await guard(`${subject}: getTransactions finds it once`, async () => {
      found = await methods.getTransactions({ _id: id });
      add(found.length === 1, `${subject}: getTransactions finds it once`, `found ${found.length}`);
    });
    const raw = await db.collection('transactions').findOne({ _id: id });
    if (!raw) continue;
    await guard(`${subject}: valid against LibreChat's Transaction model`, async () => {
      const problems = await validateWithModel(models.Transaction, raw);
      add(problems.length === 0, `${subject}: valid against LibreChat's Transaction model`, problems.join('; '));
    });
    const bad = [];
    const context = exp.context ?? 'admin';
    if (!(raw.user?._bsontype === 'ObjectId' && raw.user.toHexString() === exp.userId)) bad.push(`user is ${show('user', raw.user)}`);
    if (raw.tokenType !== 'credits') bad.push(`tokenType is ${show('tokenType', raw.tokenType)}`);
    if (raw.context !== context) bad.push(`context is ${show('context', raw.context)}, expected "${context}"`);
    if (raw.rawAmount !== exp.rawAmount) bad.push(`rawAmount is ${show('rawAmount', raw.rawAmount)}, expected ${exp.rawAmount}`);
    if (raw.rate !== 1) bad.push(`rate is ${show('rate', raw.rate)} (credits without a model have multiplier 1)`);
    if (raw.tokenValue !== exp.rawAmount) bad.push(`tokenValue is ${show('tokenValue', raw.tokenValue)}, expected rawAmount × 1`);
    for (const k of ['createdAt', 'updatedAt']) if (!(raw[k] instanceof Date)) bad.push(`${k} is ${bsonTypeName(raw[k])}`);
    if (raw.__v !== 0) bad.push(`__v is ${show('__v', raw.__v)}`);
    for (const k of Object.keys(raw)) if (!TRANSACTION_FIELDS.includes(k)) bad.push(`unexpected field "${k}"`);
    add(bad.length === 0, `${subject}: shaped like createTransaction's credits document`, bad.join('; '));
  }
}

// ----- pluginAuths: LibreChat's getUserPluginAuthValue (findOnePluginAuth + decrypt) -----
// decrypt reads CREDS_KEY/CREDS_IV from the environment when the package is loaded, so the
// caller sets them for this process. A mismatch never prints the plaintext or the value.
async function checkPluginAuths(ctx, expected, add, guard) {
  const { models, methods, db } = ctx;
  for (const exp of expected) {
    const { userId, pluginKey, authField } = exp;
    const subject = `pluginauth ${userId} ${pluginKey}.${authField}`;
    const rows = await db.collection('pluginauths').find({ userId, pluginKey, authField }).toArray();
    if (exp.plaintext === null) {
      add(rows.length === 0, `${subject}: absent`, `${rows.length} row(s) remain`);
      continue;
    }
    add(rows.length === 1, `${subject}: exactly one row`, `${rows.length} rows`);
    if (rows.length === 0) continue;
    await guard(`${subject}: findOnePluginAuth finds it and decrypt recovers the credential`, async () => {
      const found = await methods.findOnePluginAuth({ userId, authField, pluginKey });
      const plain = found ? await ds.decrypt(found.value) : undefined;
      add(plain === exp.plaintext, `${subject}: findOnePluginAuth finds it and decrypt recovers the credential`,
        found ? 'decrypts to a different value' : 'findOnePluginAuth returned null');
    });
    const problems = await validateWithModel(models.PluginAuth, rows[0]);
    add(problems.length === 0, `${subject}: valid PluginAuth document`, problems.join('; '));
  }
}

// ----- groups, roles and grants (contract-surface §5) --------------------------------------

const GROUP_FIELDS = ['_id', 'name', 'description', 'email', 'avatar', 'memberIds', 'source', 'idOnTheSource', 'createdAt', 'updatedAt', '__v'];
const sortedStrings = (list) => [...list].map(String).sort();

/** LibreChat's findGroupById finds the group, and it is shaped as createGroup saves one. */
async function checkGroups({ models, methods, db }, expected, add, guard) {
  for (const exp of expected) {
    const subject = `group ${exp.id}`;
    let found = null;
    const name = `${subject}: findGroupById ${exp.absent ? 'finds nothing' : 'finds it'}`;
    await guard(name, async () => {
      found = await methods.findGroupById(exp.id);
      add(!!found === !exp.absent, name, found ? `found "${found.name}"` : 'findGroupById returned null');
    });
    if (!found || exp.absent) continue;
    const raw = await db.collection('groups').findOne({ _id: found._id });
    await guard(`${subject}: valid against LibreChat's Group model`, async () => {
      const problems = await validateWithModel(models.Group, raw);
      add(problems.length === 0, `${subject}: valid against LibreChat's Group model`, problems.join('; '));
    });
    const bad = [];
    for (const k of Object.keys(raw)) if (!GROUP_FIELDS.includes(k)) bad.push(`unexpected field "${k}"`);
    for (const k of ['createdAt', 'updatedAt']) if (!(raw[k] instanceof Date)) bad.push(`${k} is ${bsonTypeName(raw[k])}`);
    if (!Array.isArray(raw.memberIds)) bad.push(`memberIds is ${bsonTypeName(raw.memberIds)}`);
    add(bad.length === 0, `${subject}: shaped like createGroup's document`, bad.join('; '));
    const want = { source: 'local', ...exp };
    for (const k of ['name', 'description', 'email', 'source'])
      if (k in want) add(raw[k] === want[k], `${subject}: ${k} = ${show(k, want[k])}`, `stored ${k} is ${show(k, raw[k])}`);
    if (exp.memberIds) {
      const have = sortedStrings(raw.memberIds ?? []);
      add(isDeepStrictEqual(have, sortedStrings(exp.memberIds)), `${subject}: memberIds = ${show('m', sortedStrings(exp.memberIds))}`, `stored ${show('m', have)}`);
    }
  }
}

/** LibreChat's getUserPrincipals: the groups and the role a user acts as. */
async function checkPrincipals({ methods }, expected, add, guard) {
  for (const exp of expected) {
    const subject = `principals of ${exp.userId}`;
    await guard(`${subject}: getUserPrincipals`, async () => {
      const principals = await methods.getUserPrincipals({ userId: exp.userId });
      const groups = new Set(principals.filter((p) => p.principalType === 'group').map((p) => String(p.principalId)));
      for (const g of exp.groups ?? []) add(groups.has(g), `${subject}: getUserPrincipals includes group ${g}`, `groups: ${[...groups].join(', ') || 'none'}`);
      for (const g of exp.notGroups ?? []) add(!groups.has(g), `${subject}: getUserPrincipals omits group ${g}`, 'the group is still a principal');
      if ('role' in exp) {
        const roles = principals.filter((p) => p.principalType === 'role').map((p) => p.principalId);
        add(isDeepStrictEqual(roles, [exp.role]), `${subject}: getUserPrincipals acts as role ${exp.role}`, `roles: ${roles.join(', ') || 'none'}`);
      }
    });
  }
}

/**
 * LibreChat's getRoleByName reads the declared permissions. The stored document is read raw
 * first: getRoleByName creates a missing built-in role, and this module never writes.
 */
async function checkRoles({ models, methods, db }, expected, add, guard) {
  for (const exp of expected) {
    const subject = `role ${exp.name}`;
    const raw = await db.collection('roles').findOne({ name: exp.name });
    if (exp.absent) {
      add(!raw, `${subject}: absent`, 'the role is still stored');
      continue;
    }
    add(!!raw, `${subject}: stored`, 'no roles document with that name');
    if (!raw) continue;
    await guard(`${subject}: valid against LibreChat's Role model`, async () => {
      const problems = await validateWithModel(models.Role, raw);
      add(problems.length === 0, `${subject}: valid against LibreChat's Role model`, problems.join('; '));
    });
    await guard(`${subject}: getRoleByName reads the declared permissions`, async () => {
      const role = await methods.getRoleByName(exp.name);
      const stored = role?.permissions ?? {};
      const wrong = [];
      for (const [type, keys] of Object.entries(exp.permissions ?? {}))
        for (const [key, value] of Object.entries(keys))
          if (stored[type]?.[key] !== value) wrong.push(`${type}.${key} is ${show(key, stored[type]?.[key])}, declared ${value}`);
      if (exp.exact) {
        for (const [type, keys] of Object.entries(stored))
          for (const key of Object.keys(keys ?? {}))
            if (exp.permissions?.[type]?.[key] === undefined) wrong.push(`${type}.${key} is stored but not declared`);
      }
      if ('description' in exp && role?.description !== exp.description) wrong.push(`description is ${show('d', role?.description)}`);
      add(wrong.length === 0, `${subject}: getRoleByName reads the declared permissions`, wrong.join('; '));
    });
  }
}

/** LibreChat's hasPermission and getEffectivePermissions find (or not) the declared grant. */
async function checkAclEntries({ models, methods, db }, expected, add, guard) {
  for (const exp of expected) {
    const principalId = exp.principalType === 'group' ? new mongoose.Types.ObjectId(exp.principalId) : exp.principalId;
    const resourceId = new mongoose.Types.ObjectId(exp.resourceId);
    const principals = [{ principalType: exp.principalType, principalId }];
    const subject = `grant to ${exp.principalType} ${exp.principalId} on ${exp.resourceType} ${exp.resourceId}`;
    await guard(`${subject}: ${exp.expectFound ? `effective permBits ${exp.permBits}` : 'absent'}`, async () => {
      const has = await methods.hasPermission(principals, exp.resourceType, resourceId, exp.permBits);
      const bits = await methods.getEffectivePermissions(principals, exp.resourceType, resourceId);
      if (exp.expectFound)
        add(has && bits === exp.permBits, `${subject}: effective permBits ${exp.permBits}`, `hasPermission ${has}, getEffectivePermissions ${bits}`);
      else add(bits === 0, `${subject}: absent`, `getEffectivePermissions ${bits}`);
    });
    const rows = await db.collection('aclentries').find({ principalType: exp.principalType, principalId, resourceType: exp.resourceType, resourceId }).toArray();
    add(rows.length === (exp.expectFound ? 1 : 0), `${subject}: ${exp.expectFound ? 'one' : 'no'} aclentries document`, `${rows.length} document(s)`);
    for (const raw of rows) {
      await guard(`${subject}: valid against LibreChat's AclEntry model`, async () => {
        const problems = await validateWithModel(models.AclEntry, raw);
        const model = { group: 'Group', role: 'Role' }[exp.principalType];
        if (raw.principalModel !== model) problems.push(`principalModel is ${show('m', raw.principalModel)}, grantPermission writes "${model}"`);
        if (!(raw.grantedAt instanceof Date)) problems.push(`grantedAt is ${bsonTypeName(raw.grantedAt)}`);
        add(problems.length === 0, `${subject}: valid against LibreChat's AclEntry model`, problems.join('; '));
      });
    }
  }
}

/** Each listed user holds the role, as getUserById reads it (deleteRoleByName's outcome). */
async function checkRoleMembers({ methods }, expected, add, guard) {
  for (const exp of expected) {
    for (const userId of exp.userIds) {
      const name = `user ${userId}: role ${exp.role}`;
      await guard(name, async () => {
        const user = await methods.getUserById(userId, 'role');
        add(user?.role === exp.role, name, user ? `role is ${show('role', user.role)}` : 'getUserById returned null');
      });
    }
  }
}

/** Formats results as "ok - ..." / "not ok - ... : reason" lines plus the summary line. */
export function formatResults(results) {
  const lines = results.map((r) => (r.ok ? `ok - ${r.name}` : `not ok - ${r.name}: ${r.reason || 'failed'}`));
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  lines.push(`contract: ${passed} passed, ${failed} failed`);
  return { lines, passed, failed };
}
