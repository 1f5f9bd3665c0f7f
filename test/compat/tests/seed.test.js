'use strict';
// The examples under examples/ are the seed guide's JavaScript blocks, byte for
// byte, and every one of them is run by some test of this suite.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { ROOT } = require('../lib/harness');
const ex = require('../lib/examples');

const SEED = '000_037a1f7bee487ce6.txt';

function seedPath() {
  const candidates = [
    process.env.IMCLUSTER_SEED,
    path.join(ROOT, '..', 'shared', 'seeds', SEED),
    path.join('/work', 'shared', 'seeds', SEED),
  ].filter(Boolean);
  const found = candidates.find((p) => fs.existsSync(p));
  assert.ok(found, `seed guide not found in ${candidates.join(', ')} (set IMCLUSTER_SEED)`);
  return found;
}

function seedBlocks() {
  const lines = fs.readFileSync(seedPath(), 'utf8').split('\n');
  const blocks = [];
  let cur = null;
  lines.forEach((l, i) => {
    if (cur === null && /^```js/.test(l)) {
      cur = { line: i + 1, body: [] };
    } else if (cur !== null && /^```/.test(l)) {
      blocks.push({ line: cur.line, text: cur.body.join('\n') + '\n' });
      cur = null;
    } else if (cur) {
      cur.body.push(l);
    }
  });
  return blocks;
}

test('examples/ holds exactly the seed guide\'s JavaScript blocks, unmodified', () => {
  const blocks = seedBlocks();
  assert.ok(blocks.length >= 50, `only ${blocks.length} js blocks found`);
  const files = fs.readdirSync(ex.DIR).filter((f) => f.endsWith('.js')).sort();
  assert.deepEqual(files, blocks.map((b) => `L${String(b.line).padStart(4, '0')}.js`));
  for (const b of blocks) assert.equal(ex.printed(b.line), b.text, `example at line ${b.line} differs from the guide`);
});

test('every example is run by a test', () => {
  const dir = __dirname;
  const used = new Set();
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.test.js'))) {
    const src = fs.readFileSync(path.join(dir, f), 'utf8');
    // ex.run(N, ...) directly, or fragment(N) in query.test.js (which calls ex.run).
    for (const m of src.matchAll(/\b(?:ex\.run|fragment)\((\d+)\b/g)) used.add(Number(m[1]));
  }
  const missing = seedBlocks().map((b) => b.line).filter((l) => !used.has(l));
  assert.deepEqual(missing, [], 'examples no test runs');
});

test('the repaired examples really do not compile as printed', () => {
  for (const line of Object.keys(ex.REPAIRS).map(Number)) {
    assert.equal(ex.compiles(ex.printed(line)), false, `example ${line} compiles as printed: drop its repair`);
    assert.equal(ex.compiles(ex.source(line)), true, `example ${line} does not compile after its repair`);
  }
  const all = fs.readdirSync(ex.DIR).map((f) => Number(f.slice(1, 5)));
  const broken = all.filter((l) => !ex.compiles(ex.printed(l)));
  assert.deepEqual(broken.sort(), Object.keys(ex.REPAIRS).map(Number).sort());
});

test('"not supported in JavaScript" blocks are comments only (examples 3068, 3799)', async () => {
  for (const [line, ran] of [[3068, await ex.run(3068, {})], [3799, await ex.run(3799, {})]]) {
    assert.match(ex.printed(line), /^\s*\/\/[^\n]*暂不支持\s*$/);
    assert.equal(ran.thrown, null);
    assert.deepEqual(ran.calls, []);
    assert.deepEqual(ran.console.entries, []);
  }
});
