#!/usr/bin/env node
// Self-test of the contract checks, against a real MongoDB-wire server.
//   MONGODB_URI=mongodb://127.0.0.1:PORT/?replicaSet=... node tests/contract/selftest.mjs
// Starts nothing itself. Uses its own database (SELFTEST_DB, default
// "librechat_contract_selftest"), which it drops before every case and at the end.
//
// Positive cases: the golden documents written by @librechat/data-schemas 0.0.71
// (fixtures/*.json, canonical Extended JSON) must pass, with the plaintexts of
// fixtures/plaintexts.json. Negative cases: broken documents must fail, on the right check.
// Bans are also written through Keyv 5.5.2 itself, with a store that writes exactly as
// LibreChat's KeyvMongoCustom.set() does.
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { EJSON } from 'bson';
import { Keyv } from 'keyv';
import './selftest-env.mjs';
import { openContract, runChecks, formatResults, withDbName, mongoose, validateExpectations } from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const URI = process.env.MONGODB_URI;
if (!URI) {
  process.stderr.write('selftest: MONGODB_URI is not set\n');
  process.exit(2);
}
const DB = process.env.SELFTEST_DB || 'librechat_contract_selftest';
const ctx = await openContract(URI, { dbName: DB });
const { db } = ctx;
const { ObjectId } = mongoose.Types;

after(async () => {
  await db.dropDatabase().catch(() => {});
  await ctx.close();
});

// ----- fixtures -------------------------------------------------------------------------
const fixture = (name) => EJSON.parse(readFileSync(path.join(HERE, 'fixtures', name), 'utf8'), { relaxed: false });
const PLAIN = JSON.parse(readFileSync(path.join(HERE, 'fixtures', 'plaintexts.json'), 'utf8'));
const one = (name) => fixture(name)[0];

const JANE = one('users.local.json');
const ADMIN = one('users.local-first-admin.json');
const SSO = one('users.sso-openid.json');
const UNVERIFIED = one('users.local-unverified.json');
const JANE_ID = JANE._id.toHexString();
const ADMIN_ID = ADMIN._id.toHexString();
const H = 3600_000;

/** Golden time-bound documents are re-based so that they are live when the test runs. */
function freshSession() {
  const s = one('sessions.json');
  if (s.expiration.getTime() < Date.now() + H) s.expiration = new Date(Date.now() + 7 * 24 * H);
  return s;
}
function freshToken(name) {
  const t = one(name);
  if (t.expiresAt.getTime() < Date.now() + H) {
    const life = t.expiresAt.getTime() - t.createdAt.getTime();
    t.createdAt = new Date();
    t.expiresAt = new Date(t.createdAt.getTime() + life);
  }
  return t;
}

async function reset() {
  await db.dropDatabase();
}
async function insert(coll, docs) {
  await db.collection(coll).insertMany(Array.isArray(docs) ? docs : [docs]);
}
/** Every golden document (time-bound ones made live, bans left as written). */
async function seedGolden() {
  await reset();
  await insert('users', [JANE, ADMIN, SSO, UNVERIFIED]);
  await insert('sessions', freshSession());
  await insert('tokens', [freshToken('tokens.invite.json'), freshToken('tokens.email-verification.json')]);
  await insert('balances', [...fixture('balances.start-balance.json'), ...fixture('balances.start-balance-autorefill.json')]);
  await insert('logs', [...fixture('logs.user-ban.json'), ...fixture('logs.ip-ban.json'), ...fixture('logs.checkban-cache.json')]);
}

/** Writes like LibreChat's KeyvMongoCustom.set (packages/api/src/cache/keyvMongo.ts). */
class LogsWriter {
  constructor() {
    this.namespace = undefined;
    this.ttlSupport = false;
    this.opts = {};
  }
  async get(key) {
    return (await db.collection('logs').findOne({ key: { $eq: key } }))?.value;
  }
  async set(key, value, ttl) {
    const expiresAt = typeof ttl === 'number' ? new Date(Date.now() + ttl) : null;
    await db.collection('logs').updateOne({ key: { $eq: key } }, { $set: { key, value, expiresAt } }, { upsert: true });
  }
  async delete(key) {
    return (await db.collection('logs').deleteOne({ key: { $eq: key } })).deletedCount > 0;
  }
  async clear() {}
  on() {
    return this;
  }
}
const banLogs = (ttl) => new Keyv({ store: new LogsWriter(), namespace: 'BANS', ...(ttl === undefined ? {} : { ttl }) });
const banCache = () => new Keyv({ store: new LogsWriter(), namespace: 'ban', ttl: 0 });

// ----- assertions -----------------------------------------------------------------------
const describe = (results) => formatResults(results).lines.join('\n');
function assertAllOk(results) {
  assert.ok(results.length > 0, 'no checks ran');
  const bad = results.filter((r) => !r.ok);
  assert.equal(bad.length, 0, `expected every check to pass:\n${describe(results)}`);
}
function assertFails(results, pattern) {
  const bad = results.filter((r) => !r.ok);
  assert.ok(
    bad.some((r) => pattern.test(`${r.name}: ${r.reason}`)),
    `expected a failing check matching ${pattern}:\n${describe(results)}`,
  );
}
const check = (exp) => runChecks(ctx, exp);

const janeExpectation = {
  email: `  ${PLAIN['users.local.json'].registeredAs.toUpperCase()} `,
  password: PLAIN['users.local.json'].password,
  provider: 'local',
  role: 'USER',
  emailVerified: true,
  name: 'Jane Doe',
  username: 'janed',
};

// ========================================================================================
// Positive: golden documents written by LibreChat's own code pass
// ========================================================================================

test('golden users, session, invite and bans pass', async () => {
  await seedGolden();
  const now = Date.now();
  const goldenBanLive = (name) =>
    fixture(name).every((d) => {
      const env = JSON.parse(d.value);
      return env.expires > now && env.value.expiresAt > now;
    });
  const results = await check({
    users: [
      janeExpectation,
      {
        email: 'First.Admin@example.com',
        password: PLAIN['users.local-first-admin.json'].password,
        provider: 'local',
        role: 'ADMIN',
        emailVerified: true,
        name: 'First Admin',
        username: 'firstadmin',
      },
      { email: 'sso.user@example.com ', password: null, provider: 'openid', role: 'USER', emailVerified: true, name: 'Sso User' },
    ],
    sessionsPresent: [JANE_ID],
    sessionsRevoked: [ADMIN_ID],
    invites: [
      { rawToken: PLAIN['tokens.invite.json'].rawToken, email: ' Invitee@Example.com', expectFound: true },
      { rawToken: PLAIN['tokens.invite.json'].rawToken, email: 'someone.else@example.com', expectFound: false },
      { rawToken: 'f'.repeat(64), email: 'invitee@example.com', expectFound: false },
    ],
    absentUsers: [{ email: 'nobody@example.com', userId: new ObjectId().toHexString(), transactionsDeleted: true }],
    bans: [
      // as written by LibreChat (their clock has passed by now, unless the machine's clock is early)
      { key: `BANS:${JANE_ID}`, expectActive: goldenBanLive('logs.user-ban.json') },
      { key: 'BANS:203.0.113.7', expectActive: goldenBanLive('logs.ip-ban.json') },
      { key: 'BANS:192.0.2.99', expectActive: false },
    ],
  });
  assertAllOk(results);
  // the checks that matter did run
  const names = results.map((r) => r.name).join('\n');
  for (const p of [/password matches/, /valid against LibreChat's User model/, /getInvite finds it/, /findSession finds a live session/])
    assert.match(names, p);
});

test('bans written through Keyv 5.5.2 as LibreChat does: active ones are active', async () => {
  await reset();
  const now = Date.now();
  // banViolation: banLogs.set(user_id, {...}) with the store's ttl = BAN_DURATION
  await banLogs(2 * H).set(JANE_ID, {
    type: 'concurrent',
    violation_count: 20,
    duration: H,
    expiresAt: now + H,
    user_id: JANE_ID,
  });
  // a ban without any expiry (operator's indefinite ban): no envelope expires, no value.expiresAt
  await banLogs().set(ADMIN_ID, { type: 'concurrent', violation_count: 20, user_id: ADMIN_ID });
  // IP ban
  await banLogs(2 * H).set('198.51.100.7', { type: 'concurrent', user_id: JANE_ID, violation_count: 20, duration: H, expiresAt: now + H });
  // a string value starting with ':' exercises @keyv/serialize's escaping
  await banLogs(2 * H).set('odd', { type: ':colon', expiresAt: now + H });
  const raw = await db.collection('logs').findOne({ key: 'BANS:odd' });
  assert.match(raw.value, /"::colon"/, 'keyv escapes leading colons');
  const results = await check({
    bans: [
      { key: `BANS:${JANE_ID}`, expectActive: true, userId: JANE_ID },
      { key: `BANS:${ADMIN_ID}`, expectActive: true, userId: ADMIN_ID },
      { key: 'BANS:198.51.100.7', expectActive: true, userId: JANE_ID },
      { key: 'BANS:odd', expectActive: true },
    ],
  });
  assertAllOk(results);
});

test('a lifted ban (all entries deleted) is not active', async () => {
  await reset();
  await banLogs(2 * H).set(JANE_ID, { type: 'concurrent', expiresAt: Date.now() + H, user_id: JANE_ID });
  await banCache().set(JANE_ID, { type: 'concurrent', expiresAt: Date.now() + H, user_id: JANE_ID }, H);
  await db.collection('logs').deleteMany({ key: { $regex: '^(BANS|ban):' } });
  assertAllOk(await check({ bans: [{ key: `BANS:${JANE_ID}`, expectActive: false }] }));
});

// ========================================================================================
// Negative: broken documents fail, on the right check
// ========================================================================================

test('user whose email is not lowercased is not found by findUser', async () => {
  await reset();
  await insert('users', { ...JANE, email: 'Jane.Doe@Example.com' });
  assertFails(await check({ users: [janeExpectation] }), /findUser.*finds it/);
});

test('user with surrounding spaces in email fails (not found / not normalized)', async () => {
  await reset();
  await insert('users', { ...JANE, email: ' jane.doe@example.com' });
  assertFails(await check({ users: [janeExpectation] }), /findUser.*finds it/);
});

test('user with tenantId fails', async () => {
  await reset();
  await insert('users', { ...JANE, tenantId: 'tenant-a' });
  assertFails(await check({ users: [janeExpectation] }), /forbidden fields.*tenantId/);
});

test('user with an SSO id stored as null fails', async () => {
  await reset();
  await insert('users', { ...SSO, openidId: null });
  assertFails(await check({ users: [{ email: 'sso.user@example.com', password: null }] }), /forbidden fields.*openidId is null/);
});

test('user with the unverified-user TTL (expiresAt) fails', async () => {
  await reset();
  await insert('users', UNVERIFIED); // golden, but a managed account must not carry expiresAt
  assertFails(
    await check({ users: [{ email: 'unverified@example.com', password: PLAIN['users.local-unverified.json'].password }] }),
    /forbidden fields.*expiresAt/,
  );
});

test('wrong password fails', async () => {
  await reset();
  await insert('users', JANE);
  assertFails(await check({ users: [{ ...janeExpectation, password: 'Not-The-Password-1' }] }), /password matches.*compare returned false/);
});

test('plaintext password stored (not a bcrypt hash) fails', async () => {
  await reset();
  await insert('users', { ...JANE, password: 'Jane-Fixture-Pass-2' });
  assertFails(await check({ users: [janeExpectation] }), /password matches.*not a bcrypt hash/);
});

test('password present where none is expected fails', async () => {
  await reset();
  await insert('users', JANE);
  assertFails(await check({ users: [{ email: JANE.email, password: null }] }), /has no password field/);
});

test('field mismatch fails (role)', async () => {
  await reset();
  await insert('users', JANE);
  assertFails(await check({ users: [{ email: JANE.email, role: 'ADMIN' }] }), /role = "ADMIN".*stored role is "USER"/);
});

test('wrong BSON types fail schema validation (hydrate alone would cast them)', async () => {
  await reset();
  await insert('users', { ...JANE, emailVerified: 'true', createdAt: '2026-01-01T00:00:00Z' });
  const results = await check({ users: [{ email: JANE.email }] });
  assertFails(results, /User model.*"emailVerified" is string, schema says Boolean/);
  assertFails(results, /User model.*"createdAt" is string, schema says Date/);
});

test('fields unknown to the schema fail (e.g. a fork-only passwordVersion)', async () => {
  await reset();
  await insert('users', { ...JANE, passwordVersion: Date.now() });
  assertFails(await check({ users: [{ email: JANE.email }] }), /unknown field "passwordVersion"/);
});

test('invalid values fail validate(): required provider null, bad personalization enum', async () => {
  await reset();
  // (a missing provider would not fail: mongoose fills the default 'local' on read, as LibreChat does)
  await insert('users', { ...JANE, provider: null, personalization: { ...JANE.personalization, statefulCodeEnvironment: 'nope' } });
  const results = await check({ users: [{ email: JANE.email }] });
  assertFails(results, /validate\(\): provider/);
  assertFails(results, /validate\(\): personalization.statefulCodeEnvironment/);
});

test('username not lowercased fails (schema lowercase setter)', async () => {
  await reset();
  await insert('users', { ...JANE, username: 'JaneD' });
  assertFails(await check({ users: [{ email: JANE.email }] }), /"username" is not normalized/);
});

test('duplicate email fails', async () => {
  await reset();
  await insert('users', [JANE, { ...JANE, _id: new ObjectId() }]);
  assertFails(await check({ users: [{ email: JANE.email }] }), /unique.*countUsers\(\{email\}\) = 2/);
});

test('absent user: leftovers with the right BSON type fail, wrong-type ones do not count', async () => {
  await seedGolden();
  await db.collection('users').deleteOne({ _id: JANE._id });
  await insert('conversations', { conversationId: 'c1', user: JANE_ID });
  await insert('messages', { messageId: 'm1', user: JANE._id }); // wrong type: not LibreChat's reference
  await insert('groups', { name: 'g', source: 'local', memberIds: [JANE_ID] });
  await insert('transactions', { user: JANE._id, tokenType: 'credits', rawAmount: 1 });
  const results = await check({ absentUsers: [{ email: JANE.email, userId: JANE_ID }] });
  assertFails(results, /no balances with user = ObjectId/);
  assertFails(results, /no sessions with user = ObjectId/);
  assertFails(results, /no conversations with user = String/);
  assertFails(results, /no groups with memberIds/);
  assert.ok(results.find((r) => /no messages with/.test(r.name)).ok, 'ObjectId in messages.user is not a String reference');
  assert.ok(!results.some((r) => /transactions/.test(r.name)), 'transactions only checked with transactionsDeleted');
  assertFails(await check({ absentUsers: [{ userId: JANE_ID, transactionsDeleted: true }] }), /no transactions with user/);
});

test('absent user: sole-owned resources left, or references to deleted ones, fail; co-owned ones pass', async () => {
  await reset();
  const other = new ObjectId();
  const [kept, orphan, gone] = [new ObjectId(), new ObjectId(), new ObjectId()];
  await insert('agents', [
    { _id: kept, id: 'agent_kept', name: 'k', provider: 'openAI', model: 'gpt-4o', author: JANE._id, edges: [] },
    { _id: orphan, id: 'agent_orphan', name: 'o', provider: 'openAI', model: 'gpt-4o', author: JANE._id,
      edges: [{ from: 'agent_orphan', to: 'agent_gone' }] },
  ]);
  await insert('aclentries', [
    { principalType: 'user', principalId: other, principalModel: 'User', resourceType: 'agent', resourceId: kept, permBits: 15 },
    { principalType: 'user', principalId: other, principalModel: 'User', resourceType: 'agent', resourceId: gone, permBits: 1 },
  ]);
  await insert('users', { ...ADMIN, favorites: [{ agentId: 'agent_kept' }, { agentId: 'agent_gone' }] });
  await insert('prompts', { groupId: new ObjectId(), author: other, prompt: 'p', type: 'text' });
  const results = await check({ absentUsers: [{ userId: JANE_ID }] });
  assertFails(results, /every agents document they authored that survives has another owner/);
  assertFails(results, /no ACL entry on a missing agents document/);
  assertFails(results, /no users favorites.agentId names a missing agent/);
  assertFails(results, /no agents edges.to names a missing agent/);
  assertFails(results, /no prompts of a missing promptgroups document/);
  await db.collection('agents').deleteOne({ _id: orphan });
  await db.collection('aclentries').deleteMany({ resourceId: gone });
  await db.collection('users').updateOne({ _id: ADMIN._id }, { $set: { favorites: [{ agentId: 'agent_kept' }] } });
  await db.collection('prompts').deleteMany({});
  assertAllOk(await check({ absentUsers: [{ userId: JANE_ID }] }));
});

test('absent user still stored fails', async () => {
  await reset();
  await insert('users', JANE);
  const results = await check({ absentUsers: [{ email: ' JANE.DOE@example.com', userId: JANE_ID }] });
  assertFails(results, /findUser finds nothing/);
  assertFails(results, /getUserById finds nothing/);
});

test('sessions: revoked fails when a session is left, present fails when only expired or mistyped ones exist', async () => {
  await reset();
  await insert('sessions', freshSession());
  assertFails(await check({ sessionsRevoked: [JANE_ID] }), /findSession finds no live session/);

  await reset();
  await insert('sessions', { ...freshSession(), expiration: new Date(Date.now() - 1000) });
  const expired = await check({ sessionsPresent: [JANE_ID], sessionsRevoked: [JANE_ID] });
  assertFails(expired, /findSession finds a live session/);
  assertFails(expired, /no session documents left/); // revoke must delete, not wait for the TTL

  await reset();
  await insert('sessions', { ...freshSession(), user: JANE_ID });
  assertFails(await check({ sessionsPresent: [JANE_ID] }), /findSession finds a live session/);
});

test('invites: bcrypt-hashed or typed tokens, mixed-case email and expired invites fail', async () => {
  const raw = PLAIN['tokens.invite.json'].rawToken;
  const inv = [{ rawToken: raw, email: 'invitee@example.com', expectFound: true }];

  await reset();
  await insert('tokens', { ...freshToken('tokens.invite.json'), token: '$2a$10$DEPVLEhJJLrOG1GG0O0mcexlibTdfZmR1FsAUE5fCQn4945fNnWBC' });
  assertFails(await check({ invites: inv }), /getInvite finds it/);

  await reset();
  await insert('tokens', { ...freshToken('tokens.invite.json'), email: 'Invitee@Example.com' });
  assertFails(await check({ invites: inv }), /getInvite finds it/);

  await reset();
  await insert('tokens', { ...freshToken('tokens.invite.json'), type: 'invite' });
  assertFails(await check({ invites: inv }), /shaped like createInvite.*type is set/);

  await reset();
  await insert('tokens', { ...one('tokens.invite.json'), expiresAt: new Date(Date.now() - 1000) });
  assertFails(await check({ invites: inv }), /expiresAt .* has passed/);

  await reset();
  const { userId, ...noUser } = freshToken('tokens.invite.json');
  await insert('tokens', noUser);
  assertFails(await check({ invites: inv }), /Token model.*validate\(\): userId/);

  await reset();
  await insert('tokens', freshToken('tokens.invite.json'));
  assertFails(await check({ invites: [{ ...inv[0], expectFound: false }] }), /getInvite does not find it/);
});

test('bans: expired ones are not active', async () => {
  await reset();
  const now = Date.now();
  // envelope expired (Keyv.get returns undefined and would delete it)
  await banLogs(-1000).set(JANE_ID, { type: 'concurrent', expiresAt: now + H, user_id: JANE_ID });
  // envelope live, but value.expiresAt passed (checkBan deletes it and lets the user in)
  await banLogs(2 * H).set(ADMIN_ID, { type: 'concurrent', expiresAt: now - 1000, user_id: ADMIN_ID });
  const results = await check({
    bans: [
      { key: `BANS:${JANE_ID}`, expectActive: true },
      { key: `BANS:${ADMIN_ID}`, expectActive: true },
    ],
  });
  assertFails(results, new RegExp(`BANS:${JANE_ID}: active .*envelope expired`));
  assertFails(results, new RegExp(`BANS:${ADMIN_ID}: active .*has passed`));
  // and the same documents satisfy expectActive:false
  assertAllOk(
    await check({
      bans: [
        { key: `BANS:${JANE_ID}`, expectActive: false },
        { key: `BANS:${ADMIN_ID}`, expectActive: false },
      ],
    }),
  );
});

test('bans: a golden expired ban does not count as active', async (t) => {
  await seedGolden();
  const env = JSON.parse(one('logs.user-ban.json').value);
  if (env.expires > Date.now()) return t.skip('machine clock is before the golden ban expiry');
  assertFails(await check({ bans: [{ key: `BANS:${JANE_ID}`, expectActive: true }] }), /envelope expired/);
});

test('bans: an active ban expected lifted fails', async () => {
  await reset();
  await banLogs(2 * H).set(JANE_ID, { type: 'concurrent', expiresAt: Date.now() + H, user_id: JANE_ID });
  assertFails(await check({ bans: [{ key: `BANS:${JANE_ID}`, expectActive: false }] }), /not active as checkBan judges it.*envelope live/);
});

test('bans: lifting only BANS: leaves checkBan cache entries, which fail', async () => {
  await reset();
  const v = { type: 'concurrent', expiresAt: Date.now() + H, user_id: JANE_ID };
  await banCache().set(JANE_ID, v, H);
  await banCache().set('ban_cache:ip:198.51.100.23', v, H);
  const results = await check({ bans: [{ key: `BANS:${JANE_ID}`, expectActive: false }] });
  assertFails(results, new RegExp(`no live checkBan cache entry.*ban:${JANE_ID}`));
  assertFails(results, /no other live ban entry naming user.*ban:ban_cache:ip:198\.51\.100\.23/);
});

test('bans: a logs document not written like KeyvMongo/Keyv fails', async () => {
  await reset();
  await insert('logs', { key: `BANS:${JANE_ID}`, value: { value: { type: 'x' } }, expiresAt: 'soon', extra: 1 });
  const results = await check({ bans: [{ key: `BANS:${JANE_ID}`, expectActive: true }] });
  assertFails(results, /shaped like KeyvMongo.*value is object, KeyvMongo stores a String/);
  assertFails(results, /shaped like KeyvMongo.*unexpected field "extra"/);
  await reset();
  await banLogs(2 * H).set(JANE_ID, { type: 'concurrent', expiresAt: Date.now() + H, user_id: ADMIN_ID });
  assertFails(await check({ bans: [{ key: `BANS:${JANE_ID}`, expectActive: true, userId: JANE_ID }] }), /value.user_id is "/);
});

// ========================================================================================
// The CLI
// ========================================================================================

function runCli(expectations, env = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contract-selftest-'));
  try {
    const file = path.join(dir, 'expect.json');
    writeFileSync(file, typeof expectations === 'string' ? expectations : JSON.stringify(expectations));
    const r = spawnSync(process.execPath, [path.join(HERE, 'check.mjs'), file], {
      encoding: 'utf8',
      env: { ...process.env, MONGODB_URI: withDbName(URI, DB), ...env },
      timeout: 120_000,
    });
    return { code: r.status, out: r.stdout, err: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('CLI: passing run exits 0 with the summary line last', async () => {
  await seedGolden();
  const r = runCli({ users: [janeExpectation], sessionsPresent: [JANE_ID] });
  assert.equal(r.code, 0, r.out + r.err);
  const lines = r.out.trimEnd().split('\n');
  assert.match(lines.at(-1), /^contract: \d+ passed, 0 failed$/);
  assert.ok(lines.slice(0, -1).every((l) => l.startsWith('ok - ')), r.out);
});

test('CLI: failing run exits 1 and never prints passwords, hashes or raw tokens', async () => {
  await seedGolden();
  await insert('users', { ...JANE, _id: new ObjectId(), email: 'plain@example.com', password: 'short12' });
  const secrets = [
    PLAIN['users.local.json'].password,
    PLAIN['users.local-first-admin.json'].password,
    'Wrong-Password-99',
    'short12',
    JANE.password,
    ADMIN.password,
    PLAIN['tokens.invite.json'].rawToken,
    one('tokens.invite.json').token,
  ];
  const r = runCli({
    users: [
      { ...janeExpectation, password: 'Wrong-Password-99' },
      { email: ADMIN.email, password: PLAIN['users.local-first-admin.json'].password, role: 'USER' },
      { email: 'plain@example.com', password: 'short12' },
    ],
    invites: [{ rawToken: PLAIN['tokens.invite.json'].rawToken, email: 'invitee@example.com', expectFound: false }],
  });
  assert.equal(r.code, 1, r.out + r.err);
  assert.match(r.out, /^contract: \d+ passed, [1-9]\d* failed$/m);
  assert.match(r.out, /not ok - user plain@example\.com: valid against LibreChat's User model: .*password/);
  for (const s of secrets) assert.ok(!r.out.includes(s) && !r.err.includes(s), 'a secret was printed');
});

test('CLI: invalid expectations file and unreachable server exit 2 with a message', () => {
  let r = runCli('{"users": [{"password": "x"}]}');
  assert.equal(r.code, 2);
  assert.match(r.err, /invalid expectations file.*users\[0\]\.email/);
  r = runCli('not json');
  assert.equal(r.code, 2);
  assert.match(r.err, /cannot read expectations file/);
  r = runCli({ bans: [{ key: 'ban:x', expectActive: true }] });
  assert.equal(r.code, 2);
  r = runCli({ users: [] }, { MONGODB_URI: 'mongodb://127.0.0.1:9/LibreChat', CONTRACT_SERVER_SELECTION_TIMEOUT_MS: '500' });
  assert.equal(r.code, 2);
  assert.match(r.err, /cannot connect to MongoDB/);
});

// ========================================================================================
// Balances and credit transactions (contract-surface §3)
// ========================================================================================

test('golden balances and a grant made by LibreChat own add-balance path pass', async () => {
  await seedGolden();
  const golden = [...fixture('balances.start-balance.json'), ...fixture('balances.start-balance-autorefill.json')];
  const results = await check({
    balances: golden.map((b) => ({
      userId: b.user.toHexString(),
      tokenCredits: 20000,
      fields: { autoRefillEnabled: b.autoRefillEnabled, refillAmount: Number(b.refillAmount) },
    })),
  });
  assertAllOk(results);

  // add-balance: createTransaction({user, tokenType:'credits', context:'admin', rawAmount, balance})
  const user = new ObjectId();
  const out = await ctx.methods.createTransaction({ user, tokenType: 'credits', context: 'admin', rawAmount: 1000, balance: { enabled: true } });
  assert.equal(out.balance, 1000);
  const tx = await db.collection('transactions').findOne({ user });
  assertAllOk(
    await check({
      balances: [{ userId: user.toHexString(), tokenCredits: 1000 }],
      creditTransactions: [{ id: tx._id.toHexString(), userId: user.toHexString(), rawAmount: 1000 }],
    }),
  );
});

test('broken balances and credit transactions fail on the right check', async () => {
  await reset();
  const user = new ObjectId();
  const record = { _id: user, user, tokenCredits: 5, autoRefillEnabled: false, refillIntervalValue: 30, refillIntervalUnit: 'days', lastRefill: new Date(), refillAmount: 0, __v: 0 };
  await insert('balances', { ...record, pendingRefill: { transactionId: new ObjectId(), rawAmount: 5 } });
  const uid = user.toHexString();
  assertFails(await check({ balances: [{ userId: uid, tokenCredits: 5 }] }), /shaped like LibreChat's insert: .*pendingRefill/);
  assertFails(await check({ balances: [{ userId: uid, tokenCredits: 6 }] }), /findBalanceByUser reads 6: it reads 5/);

  await reset();
  await insert('balances', { ...record, _id: new ObjectId('000000000000000000000001'), refillIntervalUnit: 'fortnights' });
  const r = await check({ balances: [{ userId: uid, tokenCredits: 5 }] });
  assertFails(r, /valid against LibreChat's Balance model: .*refillIntervalUnit/);
  assertFails(r, /_id = user id/);
  assertFails(await check({ balances: [{ userId: new ObjectId().toHexString(), tokenCredits: 5 }] }), /1 record\(s\): 0 record/);

  const tx = new ObjectId();
  const now = new Date();
  await insert('transactions', { _id: tx, user, tokenType: 'credits', context: 'admin', rawAmount: 7, rate: 2, tokenValue: 14, createdAt: now, updatedAt: now, __v: 0 });
  assertFails(
    await check({ creditTransactions: [{ id: tx.toHexString(), userId: uid, rawAmount: 7 }] }),
    /shaped like createTransaction's credits document: .*rate is 2/,
  );
  assertFails(await check({ creditTransactions: [{ id: new ObjectId().toHexString(), userId: uid, rawAmount: 7 }] }), /getTransactions finds it once: found 0/);
});

// ========================================================================================
// pluginAuths: the contract's worked example, as updatePluginAuth stored it
// ========================================================================================

const PLUGIN_USER = '6b0f6e878c0a1431799405a2';
const serperRow = () => ({
  _id: new ObjectId('6b0f6e878c0a1431799405b2'),
  authField: 'SERPER_API_KEY',
  value: '1a66d14238b137f9a6f33a90e9235da753c9d2a6762a1bf6060852eaab283bbb',
  userId: PLUGIN_USER,
  pluginKey: 'web_search',
  createdAt: new Date(),
  updatedAt: new Date(),
  __v: 0,
});
const serper = (plaintext) => ({
  pluginAuths: [{ userId: PLUGIN_USER, pluginKey: 'web_search', authField: 'SERPER_API_KEY', plaintext }],
});

test('pluginAuths: the worked example decrypts and validates', async () => {
  await reset();
  await insert('pluginauths', serperRow());
  assertAllOk(await check(serper('sk-serper-demo-123')));
  assertAllOk(await check({
    pluginAuths: [{ userId: PLUGIN_USER, pluginKey: 'mcp_github', authField: 'GITHUB_PAT', plaintext: null }],
  }));
});

test('pluginAuths: a wrong credential, an ObjectId userId, duplicates and leftovers fail', async () => {
  await reset();
  await insert('pluginauths', serperRow());
  const wrong = await check(serper('sk-other'));
  assertFails(wrong, /decrypt recovers the credential: decrypts to a different value/);
  assert.ok(!describe(wrong).includes('sk-serper-demo-123'), 'the plaintext is never printed');
  assertFails(await check(serper(null)), /absent: 1 row\(s\) remain/);
  await insert('pluginauths', { ...serperRow(), _id: new ObjectId() });
  assertFails(await check(serper('sk-serper-demo-123')), /exactly one row: 2 rows/);
  await reset();
  await insert('pluginauths', { ...serperRow(), userId: new ObjectId(PLUGIN_USER) });
  assertFails(await check(serper('sk-serper-demo-123')), /exactly one row: 0 rows/);
});

// ========================================================================================
// Groups, roles and grants, written by LibreChat's own methods (contract-surface §5)
// ========================================================================================

const AGENT = new ObjectId('6b0f6e878c0a1431799405c1');
const PROMPTS = new ObjectId('6b0f6e878c0a1431799405c2');
const ANALYST = { PROMPTS: { USE: true, CREATE: false, SHARE: false, SHARE_PUBLIC: false }, AGENTS: { USE: true, CREATE: false, SHARE: false, SHARE_PUBLIC: false } };

/** A custom role, a local group with jane and a grant to each, as LibreChat's admin paths write them. */
async function seedAccess() {
  await reset();
  await insert('users', { ...JANE, role: 'ANALYST' });
  await ctx.methods.createRoleByName({ name: 'ANALYST', description: 'Read-mostly', permissions: ANALYST });
  const group = await ctx.methods.createGroup({ name: 'Team A', description: 'the A team', memberIds: [JANE_ID] });
  await ctx.methods.grantPermission('group', group._id, 'agent', AGENT, 1);
  await ctx.methods.grantPermission('role', 'ANALYST', 'promptGroup', PROMPTS, 3);
  return group._id.toHexString();
}
const accessExpectation = (groupId) => ({
  groups: [{ id: groupId, name: 'Team A', description: 'the A team', memberIds: [JANE_ID] }],
  principals: [{ userId: JANE_ID, groups: [groupId], role: 'ANALYST' }],
  roles: [{ name: 'ANALYST', description: 'Read-mostly', permissions: ANALYST, exact: true }],
  aclEntries: [
    { principalType: 'group', principalId: groupId, resourceType: 'agent', resourceId: AGENT.toHexString(), permBits: 1, expectFound: true },
    { principalType: 'role', principalId: 'ANALYST', resourceType: 'promptGroup', resourceId: PROMPTS.toHexString(), permBits: 3, expectFound: true },
  ],
  roleMembers: [{ role: 'ANALYST', userIds: [JANE_ID] }],
});

test('access: groups, roles and grants written by LibreChat pass, and deleteRoleByName leaves users on USER', async () => {
  const groupId = await seedAccess();
  assertAllOk(await check(accessExpectation(groupId)));
  await ctx.methods.deleteRoleByName('ANALYST');
  await ctx.methods.removeUserFromGroup?.(JANE_ID, groupId);
  await db.collection('groups').deleteOne({ _id: new ObjectId(groupId) });
  await db.collection('aclentries').deleteMany({});
  assertAllOk(await check({
    groups: [{ id: groupId, absent: true }],
    principals: [{ userId: JANE_ID, notGroups: [groupId], role: 'USER' }],
    roles: [{ name: 'ANALYST', absent: true }],
    roleMembers: [{ role: 'USER', userIds: [JANE_ID] }],
    aclEntries: [{ principalType: 'role', principalId: 'ANALYST', resourceType: 'promptGroup', resourceId: PROMPTS.toHexString(), permBits: 3, expectFound: false }],
  }));
});

test('access: wrong members, permissions, bits and shapes fail on the right check', async () => {
  const groupId = await seedAccess();
  const exp = accessExpectation(groupId);
  assertFails(await check({ ...exp, groups: [{ ...exp.groups[0], memberIds: [] }] }), /memberIds = \[\]/);
  assertFails(await check({ principals: [{ userId: JANE_ID, notGroups: [groupId] }] }), /omits group/);
  assertFails(await check({ roles: [{ name: 'ANALYST', permissions: { AGENTS: { SHARE: true } } }] }), /AGENTS.SHARE is false, declared true/);
  assertFails(await check({ roles: [{ name: 'ANALYST', permissions: { PROMPTS: ANALYST.PROMPTS }, exact: true }] }), /AGENTS.USE is stored but not declared/);
  assertFails(await check({ aclEntries: [{ ...exp.aclEntries[0], permBits: 3 }] }), /effective permBits 3: hasPermission false, getEffectivePermissions 1/);
  assertFails(await check({ roles: [{ name: 'ANALYST', absent: true }] }), /absent: the role is still stored/);
  await db.collection('groups').updateOne({ _id: new ObjectId(groupId) }, { $set: { members: [JANE_ID] }, $unset: { createdAt: '' } });
  assertFails(await check(exp), /shaped like createGroup's document: unexpected field "members"; createdAt is undefined/);
  await db.collection('aclentries').updateMany({}, { $unset: { principalModel: '' } });
  assertFails(await check(exp), /AclEntry model: .*principalModel/);
  await db.collection('groups').updateOne({ _id: new ObjectId(groupId) }, { $set: { memberIds: [new ObjectId(JANE_ID)] } });
  assertFails(await check(exp), /getUserPrincipals includes group/);
  assert.throws(() => validateExpectations({ roles: [{ name: 'X', absent: false }] }), /absent must be true \(or left out\)/);
  assert.throws(() => validateExpectations({ aclEntries: [{ principalType: 'user' }] }), /principalType must be "group" or "role"/);
});
