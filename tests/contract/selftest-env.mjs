// Imported by selftest.mjs before lib.mjs: @librechat/data-schemas reads CREDS_KEY and
// CREDS_IV when it is loaded, so they are set first. The values are the contract's worked
// example (contract-surface §2), not a real deployment's.
process.env.CREDS_KEY = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
process.env.CREDS_IV = 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf';
