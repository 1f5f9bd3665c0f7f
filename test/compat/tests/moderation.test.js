'use strict';
// Moderation through the official SDK: member roles and silencing
// (conv/add_shutup, conv/remove_shutup). Tom, Jerry and Mary are pinned to
// nodes 0, 1, 2 (modulo the number of nodes).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness } = require('../lib/harness');
const { rejection } = require('../lib/events');

const h = new Harness();
before(() => h.start());
after(() => h.stop());

test('a manager silenced by the owner cannot unsilence itself (4320)', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0);
  const jerryRT = h.realtime(app, 1);
  const tom = await tomRT.createIMClient('Tom');
  const jerry = await jerryRT.createIMClient('Jerry');
  await h.realtime(app, 2).createIMClient('Mary');
  const conv = await tom.createConversation({ members: ['Jerry', 'Mary'], name: 'moderated' });
  await conv.updateMemberRole('Jerry', tomRT.sdk.realtime.ConversationMemberRole.MANAGER);
  const jconv = await jerry.getConversation(conv.id);

  // As a manager Jerry silences and unsilences Mary.
  const muted = await jconv.muteMembers(['Mary']);
  assert.deepEqual(muted.successfulClientIds, ['Mary']);
  assert.deepEqual((await jconv.unmuteMembers(['Mary'])).successfulClientIds, ['Mary']);

  // The owner silences Jerry; Jerry's own remove_shutup fails with 4320.
  assert.deepEqual((await conv.muteMembers(['Jerry'])).successfulClientIds, ['Jerry']);
  const self = await jconv.unmuteMembers(['Jerry']);
  assert.deepEqual(self.successfulClientIds, []);
  assert.equal(self.failures.length, 1);
  assert.equal(self.failures[0].code, 4320);
  assert.equal(self.failures[0].name, 'CONVERSATION_OPERATION_UNAUTHORIZED');
  assert.deepEqual(self.failures[0].clientIds, ['Jerry']);
  assert.deepEqual((await conv.queryMutedMembers()).results, ['Jerry']);
  const err = await rejection(jconv.send(new jerryRT.sdk.realtime.TextMessage('still silenced?')));
  assert.equal(err.code, 4563);

  // The owner lifts it; Jerry talks again.
  assert.deepEqual((await conv.unmuteMembers(['Jerry'])).successfulClientIds, ['Jerry']);
  await jconv.send(new jerryRT.sdk.realtime.TextMessage('thanks'));
});
