'use strict';
// Seed guide: every conversation query form (examples 2768, 2907, 2927, 2945,
// 2963, 2984, 3006, 3024, 3044, 3114, 3159, 3199) and get by id.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness } = require('../lib/harness');
const ex = require('../lib/examples');

const h = new Harness();
before(() => h.start());
after(() => h.stop());

test('conversation queries: equalTo attr.type, regexes, containedIn, exists, combined, sort, compact, last message, by id', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0);
  const tom = await tomRT.createIMClient('Tom');
  const jerry = await h.realtime(app, 1).createIMClient('Jerry');
  const mk = (client, opts) => client.createConversation({ unique: false, ...opts });
  const A = await mk(tom, { members: ['Jerry'], name: '教育频道', attr: { type: 'private' }, language: '中文', keywords: '在线教育平台', age: 16 });
  const B = await mk(tom, { members: ['Mary'], name: '教育新闻', attr: { type: 'public' }, keywords: '教育', age: 20 });
  const C = await mk(tom, { members: ['Jerry'], name: 'Cooking Club', language: 'english', keywords: 'food', age: 10 });
  const D = await mk(jerry, { members: ['Mary'], name: 'ABC 123', language: 'ABC' });
  const E = await mk(tom, { members: ['Mary'], name: 'Cooking Club', age: 30 });
  const last = await A.send(new tomRT.sdk.realtime.TextMessage('last one'));
  const fixtures = [A, B, C, D, E];
  const ids = (list) => list.map((c) => c.id).sort();
  const want = (...convs) => convs.map((c) => c.id).sort();

  // Runs a query fragment on a fresh query of Tom's and returns the results.
  async function fragment(line) {
    const query = tom.getQuery();
    const ran = await ex.run(line, { query });
    assert.equal(ran.thrown, null, `example ${line} threw ${ran.thrown}`);
    return query.find();
  }

  // 2768: the whole example, attr.type equality.
  const r2768 = await ex.run(2768, { client: tom });
  assert.deepEqual(ids(await ex.settle(r2768, 'find')), want(A));

  // 2907: the guide's regex literal is /[\\u4e00-\\u9fa5]/, a character class
  // of backslash, u, digits, e, f, a and the range 0-\ (digits, upper case
  // letters...), not CJK. The server must match what that regex matches.
  const re = /[\\u4e00-\\u9fa5]/;
  const expect2907 = fixtures.filter((c) => typeof c.get('language') === 'string' && re.test(c.get('language')));
  assert.deepEqual(ids(await fragment(2907)), ids(expect2907));
  assert.deepEqual(ids(expect2907), want(C, D));

  assert.deepEqual(ids(await fragment(2927)), want(A, B)); // startsWith
  assert.deepEqual(ids(await fragment(2945)), want(A, B)); // contains

  // 2963: the "does not contain" idiom ^((?!X).)*$. Go's RE2 has no
  // lookahead; the server recognises this idiom and must match exactly what
  // the JavaScript regex matches.
  const negRe = new RegExp('^((?!教育).)*$', 'i');
  const expect2963 = fixtures.filter((c) => negRe.test(c.name));
  assert.deepEqual(ids(expect2963), want(C, D, E));
  assert.deepEqual(ids(await fragment(2963)), ids(expect2963));
  // Other constructs RE2 cannot compile (here a backreference) are refused
  // with 4310 CONVERSATION_QUERY_FAILED and a detail saying why.
  const err = await tom.getQuery().matches('name', /(教)\1/).find().then(() => null, (e) => e);
  assert.ok(err, 'a backreference regex must be refused');
  assert.equal(err.code, 4310);
  assert.equal(err.message, 'CONVERSATION_QUERY_FAILED');
  assert.ok(err.detail && /regex/i.test(err.detail), `detail: ${err.detail}`);

  assert.deepEqual(ids(await fragment(2984)), want(A, B, C, E)); // containedIn m
  assert.deepEqual(ids(await fragment(3006)), want(B, C, D, E)); // doesNotExist lm: all of the app's
  assert.deepEqual(ids(await fragment(3024)), want(A)); // exists lm
  assert.deepEqual(ids(await fragment(3044)), want(A)); // contains + lessThan

  // 3114: name ascending, then createdAt descending; no condition = mine.
  const sorted = await fragment(3114);
  assert.deepEqual(sorted.map((c) => c.id), [E.id, C.id, B.id, A.id]);

  // 3159: compact results carry no member lists.
  const compact = await fragment(3159);
  assert.deepEqual(ids(compact), want(A, B, C, E));
  for (const c of compact) assert.deepEqual(c.members, []);

  // 3199: results carry the last message.
  const withLast = await fragment(3199);
  const a = withLast.find((c) => c.id === A.id);
  assert.equal(a.lastMessage.text, 'last one');
  assert.equal(a.lastMessage.id, last.id);
  assert.equal(a.lastMessage.from, 'Tom');
  assert.ok(a.lastMessageAt instanceof Date);

  // Get by id works for non-members (the SDK relies on it), skip and limit 0.
  const d = await tom.getConversation(D.id);
  assert.equal(d.name, 'ABC 123');
  assert.deepEqual([...d.members].sort(), ['Jerry', 'Mary']);
  assert.deepEqual(await tom.getQuery().limit(0).find(), []);
  assert.deepEqual(await tom.getQuery().equalTo('objectId', A.id).skip(1).find(), []);
});
