#!/usr/bin/env node
// Contract check CLI.
//   MONGODB_URI=mongodb://host:port/DB node tests/contract/check.mjs EXPECTATIONS.json
// Database name: the URI path, default "LibreChat".
// Prints one "ok - ..." / "not ok - ..." line per check and a final
// "contract: N passed, M failed" line. Exit code: 0 = all passed, 1 = some check failed,
// 2 = usage error, unreadable/invalid expectations file, or cannot connect.
import { readFileSync } from 'node:fs';
import {
  openContract,
  runChecks,
  formatResults,
  validateExpectations,
  ExpectationError,
  redactUri,
  dbNameFromUri,
} from './lib.mjs';

function die(msg) {
  process.stderr.write(`contract: ${msg}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length !== 1 || args[0] === '-h' || args[0] === '--help') {
  die('usage: MONGODB_URI=mongodb://host:port/DB node check.mjs EXPECTATIONS.json');
}

let expectations;
try {
  expectations = JSON.parse(readFileSync(args[0], 'utf8'));
} catch (err) {
  die(`cannot read expectations file ${args[0]}: ${err.message}`);
}
try {
  validateExpectations(expectations);
} catch (err) {
  if (err instanceof ExpectationError) die(`invalid expectations file ${args[0]}: ${err.message}`);
  throw err;
}

const uri = process.env.MONGODB_URI;
if (!uri) die('MONGODB_URI is not set');
if (!/^mongodb(\+srv)?:\/\//.test(uri)) die(`MONGODB_URI is not a mongodb:// URI: ${redactUri(uri)}`);

let ctx;
try {
  ctx = await openContract(uri);
} catch (err) {
  die(`cannot connect to MongoDB at ${redactUri(uri)} (database ${dbNameFromUri(uri)}): ${err.message}`);
}

let code = 2;
try {
  const results = await runChecks(ctx, expectations);
  const { lines, failed } = formatResults(results);
  process.stdout.write(lines.join('\n') + '\n');
  code = failed === 0 ? 0 : 1;
} catch (err) {
  process.stderr.write(`contract: checks aborted: ${err?.stack ?? err}\n`);
  code = 2;
} finally {
  await ctx.close().catch(() => {});
}
process.exit(code);
