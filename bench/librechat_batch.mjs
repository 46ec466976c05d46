// LibreChat's own way to create N accounts, for the cold-start comparison of `make bench`:
// one Node process, a loop over what registerUser does (AuthService.js): findUser for a
// duplicate, bcryptjs hashSync at cost 10, createUser, then updateUser(emailVerified) as it
// does without an email service. Uses the contract tests' pinned packages.
//   node bench/librechat_batch.mjs MONGODB_URI DBNAME N   -> prints {"seconds": ..., "created": N}
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../tests/contract/package.json'));
process.env.CONSOLE_LOG_LEVEL ??= 'silent';
process.env.LOG_TO_FILE ??= 'false';
const mongoose = require('mongoose');
const ds = require('@librechat/data-schemas');
const bcrypt = require('bcryptjs');

const [uri, dbName, count] = process.argv.slice(2);
const n = Number(count);
await mongoose.connect(uri, { dbName, serverSelectionTimeoutMS: 10000 });
ds.createModels(mongoose);
const methods = ds.createMethods(mongoose);
const started = process.hrtime.bigint();
for (let i = 0; i < n; i++) {
  const email = `batch${i}@example.com`;
  if (await methods.findUser({ email }, 'email _id')) continue;
  const password = bcrypt.hashSync(`Batch-Password-${i}`, bcrypt.genSaltSync(10));
  const user = await methods.createUser(
    { provider: 'local', email, username: `batch${i}`, name: `Batch ${i}`, avatar: null, role: 'USER', password },
    undefined,
    false,
    true,
  );
  await methods.updateUser(user._id, { emailVerified: true });
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
console.log(JSON.stringify({ seconds, created: n }));
await mongoose.disconnect();
