'use strict';
// Server hooks (docs/hooks.md) through the official SDK, against a real HTTP
// hook server started by the test: every request's signature is checked.
// Tom, Jerry and Mary are pinned to nodes 0, 1, 2, so the hook runs on
// whichever node coordinates the conversation and its answer crosses the
// peer transport.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness } = require('../lib/harness');
const { Recorder, rejection } = require('../lib/events');
const { HookServer } = require('../lib/hookserver');
const { rest } = require('../lib/rest');

const SECRET = 'compat-hook-secret';

function answer(hook, p) {
  const content = typeof p.content === 'string' ? p.content : '';
  switch (hook) {
    case '_messageReceived':
      if (content.includes('drop me')) return { drop: true, code: 42, detail: 'no swearing' };
      if (content.includes('modify me')) return { content: content.replace('modify me', 'modified by the hook') };
      if (content.includes('redirect me')) return { toPeers: ['Mary'] };
      return {};
    case '_conversationStart':
      if (p.attr && p.attr.name === 'forbidden') return { reject: true, code: 7, detail: 'bad name' };
      return {};
    case '_conversationAdd':
      if (p.members.includes('Banned')) return { reject: true, code: 8, detail: 'banned' };
      return {};
    case '_messageUpdate':
      if (content.includes('no edit')) return { drop: true, code: 9, detail: 'frozen' };
      return {};
    default:
      return {};
  }
}

const hooks = new HookServer(SECRET, answer);
const h = new Harness({ hooks: () => ({ url: hooks.url, secret: SECRET, sysMessageUrl: `${hooks.url}/sys` }) });
before(async () => {
  await hooks.start();
  await h.start();
});
after(async () => {
  await h.stop();
  await hooks.stop();
  assert.equal(hooks.badSignatures, 0);
});

test('hooks: _messageReceived drop/modify/redirect, conversation start/add rejections, _messageUpdate, notifications', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0);
  const jerryRT = h.realtime(app, 1);
  const { Event, TextMessage } = tomRT.sdk.realtime;
  const tom = await tomRT.createIMClient('Tom');
  const jerry = await jerryRT.createIMClient('Jerry');
  const mary = await h.realtime(app, 2).createIMClient('Mary');
  const jerryMsgs = new Recorder(jerry, [Event.MESSAGE], 'Jerry');
  const maryMsgs = new Recorder(mary, [Event.MESSAGE], 'Mary');
  const online = await hooks.waitCall('_clientOnline', (p, c) => p.peerId === 'Tom' && c.appId === app.appId);
  assert.equal(online.params.tag, 'default');

  // _conversationStart rejects: 4305 with the hook's code and detail.
  const err = await rejection(tom.createConversation({ members: ['Jerry'], name: 'forbidden' }));
  assert.equal(err.code, 4305);
  assert.equal(err.name, 'CONVERSATION_REJECTED_BY_APP');
  assert.equal(err.appCode, 7);
  assert.equal(err.detail, 'bad name');
  const conv = await tom.createConversation({ members: ['Jerry'], name: 'hooked' });
  await hooks.waitCall('_conversationStarted', (p) => p.convId === conv.id);
  const addErr = await rejection(conv.add(['Banned']));
  assert.equal(addErr.code, 4305);
  assert.equal(addErr.appCode, 8);

  // _messageReceived: drop answers 4402 with appCode.
  const dropped = await rejection(conv.send(new TextMessage('please drop me')));
  assert.equal(dropped.code, 4402);
  assert.equal(dropped.name, 'MESSAGE_REJECTED_BY_APP');
  assert.equal(dropped.appCode, 42);
  assert.equal(dropped.detail, 'no swearing');
  // content replaced: Jerry receives and history holds the new text.
  const m = await conv.send(new TextMessage('modify me'));
  const [got] = await jerryMsgs.waitFor(Event.MESSAGE, (x) => x.id === m.id);
  assert.equal(got.text, 'modified by the hook');
  const sent = await hooks.waitCall('_messageSent', (p) => p.msgId === m.id);
  assert.deepEqual(sent.params.onlinePeers, ['Jerry']);
  const [stored] = await conv.queryMessages({ limit: 1 });
  assert.equal(stored.text, 'modified by the hook');
  // toPeers redirects to Mary (not a member); Jerry does not get it.
  const r = await conv.send(new TextMessage('redirect me'));
  await maryMsgs.waitFor(Event.MESSAGE, (x) => x.id === r.id);
  await jerry.getQuery().equalTo('objectId', conv.id).find(); // barrier for Jerry's pushes
  assert.equal(jerryMsgs.log.filter(({ args }) => args[0].id === r.id).length, 0);

  // _messageUpdate: a drop answers 4405.
  const hello = await conv.send(new TextMessage('hello'));
  const editErr = await rejection(conv.update(hello, new TextMessage('no edit')));
  assert.equal(editErr.code, 4405);
  assert.equal(editErr.appCode, 9);
  await conv.update(hello, new TextMessage('edited'));

  // A client's message to a system conversation passes _messageReceived
  // (system: true) and reaches the system-conversation webhook.
  const { objectId: sysId } = await rest(h, app, 'POST', '/1.2/rtm/service-conversations', { name: 'Help desk' });
  const desk = await jerry.getConversation(sysId);
  const up = await desk.send(new jerryRT.sdk.realtime.TextMessage('I need help'));
  const rec = await hooks.waitCall('_messageReceived', (p) => p.convId === sysId);
  assert.equal(rec.params.system, true);
  assert.deepEqual(rec.params.toPeers, []);
  const sys = await hooks.waitCall('/sys', (p) => p[0] && p[0].msgId === up.id);
  assert.equal(sys.params[0].from, 'Jerry');
  assert.equal(sys.params[0].conv.objectId, sysId);

  // Self-quit: no _conversationRemove, _conversationRemoved; logout: _clientOffline.
  const jconv = await jerry.getConversation(conv.id);
  await jconv.quit();
  await hooks.waitCall('_conversationRemoved', (p) => p.convId === conv.id && p.initBy === 'Jerry');
  assert.equal(hooks.calls.filter((c) => c.hook === '_conversationRemove').length, 0);
  await mary.close();
  const off = await hooks.waitCall('_clientOffline', (p, c) => p.peerId === 'Mary' && c.appId === app.appId);
  assert.equal(off.params.closeCode, 1);
});

test('hooks: REST calls with the master key run no blocking hook and fire the notification hooks', async () => {
  const app = h.app();
  const jerryRT = h.realtime(app, 1);
  const { Event } = jerryRT.sdk.realtime;
  const jerry = await jerryRT.createIMClient('Jerry');
  const jerryMsgs = new Recorder(jerry, [Event.MESSAGE], 'Jerry');

  // _conversationStart would reject this name: the back end's creations pass and are notified, with a
  // creator (a conv/start as Tom) and without one (a server call at the coordinator).
  const made = await rest(h, app, 'POST', '/1.2/rtm/conversations', { name: 'forbidden', m: ['Tom', 'Jerry'] }, 2);
  const cid = made.objectId;
  await hooks.waitCall('_conversationStarted', (p) => p.convId === cid);
  const byTom = await rest(h, app, 'POST', '/1.2/rtm/conversations', { name: 'forbidden', m: ['Jerry'], c: 'Tom' }, 2);
  await hooks.waitCall('_conversationStarted', (p) => p.convId === byTom.objectId);
  // _conversationAdd would reject Banned.
  await rest(h, app, 'POST', `/1.2/rtm/conversations/${cid}/members`, { client_ids: ['Banned'] }, 2);
  await hooks.waitCall('_conversationAdded', (p) => p.convId === cid && p.members.includes('Banned'));
  // _messageReceived would drop this text: it is stored and delivered, and _messageSent tells the hook.
  const sent = await rest(h, app, 'POST', `/1.2/rtm/conversations/${cid}/messages`,
    { from_client: 'Tom', message: 'drop me, from the back end' }, 2);
  await jerryMsgs.waitFor(Event.MESSAGE, (x) => x.id === sent['msg-id']);
  const note = await hooks.waitCall('_messageSent', (p) => p.msgId === sent['msg-id']);
  assert.equal(note.params.fromPeer, 'Tom');
  assert.equal(note.params.convId, cid);

  const blocking = ['_conversationStart', '_conversationAdd', '_messageReceived'];
  assert.deepEqual(hooks.calls.filter((c) => c.appId === app.appId && blocking.includes(c.hook) &&
    ([cid, byTom.objectId].includes(c.params.convId) || (c.params.attr && c.params.attr.name === 'forbidden'))), []);
});
