'use strict';
// Seed guide: log in, 1:1 chat between Tom and Jerry (examples at lines 44,
// 79, 199, 413, 468, 520).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness, sdk } = require('../lib/harness');
const ex = require('../lib/examples');
const { Recorder } = require('../lib/events');

const { Event } = sdk.realtime;
const h = new Harness();
before(() => h.start());
after(() => h.stop());

test('Tom logs in with his name as clientId (examples 44 and 79)', async () => {
  const app = h.app();
  const rt0 = h.realtime(app, 0);
  const rt1 = h.realtime(app, 1);
  for (const ran of [await ex.run(44, { realtime: rt0 }), await ex.run(79, { realtime: rt1 })]) {
    assert.equal(ran.thrown, null);
    const tom = await ex.settle(ran, 'createIMClient');
    assert.equal(tom.id, 'Tom');
    assert.deepEqual(ran.console.errors(), []);
  }
});

test('Tom and Jerry chat one to one (examples 199, 413, 468, 520)', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0);
  const tom = await tomRT.createIMClient('Tom');

  const jerryRT = h.realtime(app, 1);
  const jerryRan = await ex.run(468, { realtime: jerryRT }, { require: jerryRT.sdk.require });
  const jerry = await ex.settle(jerryRan, 'createIMClient');
  assert.equal(jerry.id, 'Jerry');
  const seen = new Recorder(jerry, [Event.INVITED, Event.MESSAGE, Event.MEMBERS_JOINED], 'jerry');
  const handlers = await ex.run(520, { jerry, Event });
  assert.equal(handlers.thrown, null);

  const created = await ex.run(199, { tom });
  const conversation = await ex.settle(created, 'createConversation');
  assert.equal(conversation.name, 'Tom & Jerry');
  assert.deepEqual([...conversation.members].sort(), ['Jerry', 'Tom']);
  assert.ok(conversation.createdAt instanceof Date);

  // Jerry is told he was invited, by Tom, into this conversation.
  await handlers.console.waitFor(`Tom ${conversation.id}`);
  const [payload, conv] = await seen.waitFor(Event.INVITED);
  assert.equal(payload.invitedBy, 'Tom');
  assert.equal(conv.id, conversation.id);

  const sent = await ex.run(413, { conversation }, { require: tomRT.sdk.require });
  await sent.console.waitFor('发送成功！');
  const message = await ex.settle(sent, 'send');
  assert.equal(typeof message.id, 'string');
  assert.ok(message.timestamp instanceof Date);

  await handlers.console.waitFor('收到新消息：Jerry，起床了！');
  const [received, inConv] = await seen.waitFor(Event.MESSAGE);
  assert.ok(received instanceof jerryRT.sdk.realtime.TextMessage);
  assert.equal(received.text, 'Jerry，起床了！');
  assert.equal(received.from, 'Tom');
  assert.equal(received.id, message.id);
  assert.equal(received.timestamp.getTime(), message.timestamp.getTime());
  assert.equal(inConv.id, conversation.id);

  // Unique conversation: creating it again returns the same one.
  const again = await ex.settle(await ex.run(199, { tom }), 'createConversation');
  assert.equal(again.id, conversation.id);
});
