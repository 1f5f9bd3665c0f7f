'use strict';
// Seed guide: every history form (examples 3420, 3473, 3605, 3660, 3724;
// the type filter 3560 runs in typed-messages.test.js). Spec §3.9.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness } = require('../lib/harness');
const ex = require('../lib/examples');

const h = new Harness();
before(() => h.start());
after(() => h.stop());

test('history: limit, iterator paging, OLD_TO_NEW, from a message in a direction, an interval', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0);
  const tom = await tomRT.createIMClient('Tom');
  const jerryRT = h.realtime(app, 1);
  const jerry = await jerryRT.createIMClient('Jerry');
  const conversation = await tom.createConversation({ members: ['Jerry'], name: 'history' });
  const sent = [];
  for (let i = 0; i < 25; i++) sent.push(await conversation.send(new tomRT.sdk.realtime.TextMessage(`m${i}`)));
  for (let i = 1; i < sent.length; i++) assert.ok(sent[i].timestamp > sent[i - 1].timestamp, 'server timestamps strictly increase');
  const texts = (list) => list.map((m) => m.text);
  const range = (a, b) => Array.from({ length: b - a }, (_, i) => `m${a + i}`);
  const jerryConv = await jerry.getConversation(conversation.id);
  const { MessageQueryDirection } = jerryRT.sdk.realtime;

  // 3420: the newest ten, oldest first.
  const r3420 = await ex.run(3420, { conversation: jerryConv });
  assert.deepEqual(texts(await ex.settle(r3420, 'queryMessages')), range(15, 25));

  // 3473: the iterator pages backwards, strictly older each time.
  const r3473 = await ex.run(3473, { conversation: jerryConv });
  const page1 = await ex.settle(r3473, 'next', 0);
  const page2 = await ex.settle(r3473, 'next', 1);
  assert.equal(page1.done, false);
  assert.equal(page2.done, false);
  assert.deepEqual(texts(page1.value), range(15, 25));
  assert.deepEqual(texts(page2.value), range(5, 15));
  assert.ok(page2.value[page2.value.length - 1].timestamp < page1.value[0].timestamp);
  const it = jerryConv.createMessagesIterator({ limit: 10 });
  await it.next();
  await it.next();
  const page3 = await it.next();
  assert.deepEqual(texts(page3.value), range(0, 5));
  const page4 = await it.next();
  assert.equal(page4.done, true);

  // 3605: oldest first from the beginning, default limit 20.
  const r3605 = await ex.run(3605, { conversation: jerryConv }, { require: jerryRT.sdk.require });
  assert.deepEqual(texts(await ex.settle(r3605, 'queryMessages')), range(0, 20));

  // 3660: newer than m9 (open bound).
  const r3660 = await ex.run(3660, { conversation: jerryConv, timestamp: sent[9].timestamp, messageId: sent[9].id }, { require: jerryRT.sdk.require });
  assert.deepEqual(texts(await ex.settle(r3660, 'queryMessages')), range(10, 25));

  // 3724: between m20 (start) and m10 (end), both open, walking back.
  const r3724 = await ex.run(3724, {
    conversation: jerryConv, timestamp: sent[20].timestamp, messageId: sent[20].id, endTimestamp: sent[10].timestamp, endMessageId: sent[10].id,
  });
  assert.deepEqual(texts(await ex.settle(r3724, 'queryMessages')), range(11, 20));

  // Spec §3.9.2 variants: closed bounds, the other direction, limits.
  const q = (o) => jerryConv.queryMessages(o).then(texts);
  assert.deepEqual(await q({ startTime: sent[20].timestamp, startMessageId: sent[20].id, startClosed: true, endTime: sent[10].timestamp, endMessageId: sent[10].id, endClosed: true }), range(10, 21));
  assert.deepEqual(await q({ startTime: sent[10].timestamp, startMessageId: sent[10].id, endTime: sent[20].timestamp, endMessageId: sent[20].id, direction: MessageQueryDirection.OLD_TO_NEW }), range(11, 20));
  assert.deepEqual(await q({ startTime: sent[10].timestamp, startMessageId: sent[10].id, endTime: sent[20].timestamp, endMessageId: sent[20].id }), range(11, 20));
  assert.deepEqual(await q({ limit: 3, direction: MessageQueryDirection.OLD_TO_NEW }), range(0, 3));
  assert.deepEqual(await q({ startTime: new Date(1) }), []);
  assert.deepEqual(await q({ startTime: new Date('2099-01-01'), direction: MessageQueryDirection.OLD_TO_NEW }), []);
  assert.deepEqual(await q({ type: 1000 }), []);
  const full = await jerryConv.queryMessages({ limit: 100 });
  assert.deepEqual(texts(full), range(0, 25));
  assert.ok(full.every((m, i) => m.id === sent[i].id && m.from === 'Tom' && m.timestamp.getTime() === sent[i].timestamp.getTime()));
});
