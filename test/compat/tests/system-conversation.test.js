'use strict';
// System conversations ("service conversations", the SDK's
// ServiceConversation): the fixture is made through the REST API with the
// master key, as LeanCloud apps do (clients cannot create one); clients find,
// subscribe, receive broadcasts and messages sent to them, read history,
// unsubscribe and send to it. Tom and Jerry are pinned to nodes 0 and 1.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness, poll } = require('../lib/harness');
const { Recorder } = require('../lib/events');
const { rest } = require('../lib/rest');

const h = new Harness();
before(() => h.start());
after(() => h.stop());

test('system conversation: REST fixture, find, subscribe, broadcast, chosen clients, history, unsubscribe', async () => {
  const app = h.app();
  const base = '/1.2/rtm/service-conversations';
  const made = await rest(h, app, 'POST', base, { name: 'Notices', icon: 'bell' });
  assert.match(made.objectId, /^[0-9a-f]{24}$/);
  assert.ok(made.createdAt);
  const cid = made.objectId;

  const tomRT = h.realtime(app, 0);
  const jerryRT = h.realtime(app, 1);
  const { Event, ServiceConversation } = tomRT.sdk.realtime;
  const tom = await tomRT.createIMClient('Tom');
  const jerry = await jerryRT.createIMClient('Jerry');
  const tomMsgs = new Recorder(tom, [Event.MESSAGE], 'Tom');
  const jerryMsgs = new Recorder(jerry, [Event.MESSAGE], 'Jerry');

  // Found by the SDK's service-conversation query and by id, unsubscribed.
  const found = await tom.getServiceConversationQuery().find();
  assert.equal(found.length, 1);
  assert.ok(found[0] instanceof ServiceConversation, `got ${found[0].constructor.name}`);
  assert.equal(found[0].id, cid);
  assert.equal(found[0].name, 'Notices');
  assert.equal(found[0].get('icon'), 'bell');
  const conv = await tom.getConversation(cid);
  assert.ok(conv instanceof ServiceConversation);
  const jconv = await jerry.getConversation(cid);
  assert.ok(jconv instanceof jerryRT.sdk.realtime.ServiceConversation);

  // subscribe() is join(): conv/add of oneself.
  assert.equal(await conv.subscribe(), conv);
  await jconv.subscribe();
  assert.deepEqual(await rest(h, app, 'GET', `${base}/${cid}/subscribers/count`), { count: 2 });
  const subs = await rest(h, app, 'GET', `${base}/${cid}/subscribers?limit=1`);
  assert.equal(subs.length, 1);
  assert.equal(subs[0].subscriber, 'Jerry');
  assert.equal(subs[0].conv_id, cid);
  const next = await rest(h, app, 'GET', `${base}/${cid}/subscribers?client_id=Jerry`);
  assert.deepEqual(next.map((s) => s.subscriber), ['Tom']);

  // A broadcast reaches every subscriber, from from_client, in the system
  // conversation.
  const text = JSON.stringify({ _lctype: -1, _lctext: 'hello subscribers' });
  const sent = await rest(h, app, 'POST', `${base}/${cid}/broadcasts`, { from_client: 'NoticeBot', message: text });
  assert.ok(sent['msg-id'] && sent.timestamp);
  assert.deepEqual(sent.result, { 'msg-id': sent['msg-id'], timestamp: sent.timestamp });
  for (const rec of [tomMsgs, jerryMsgs]) {
    const [msg, c] = await rec.waitFor(Event.MESSAGE, (m) => m.id === sent['msg-id']);
    assert.equal(msg.text, 'hello subscribers');
    assert.equal(msg.from, 'NoticeBot');
    assert.equal(c.id, cid);
    assert.equal(c.constructor.name, 'ServiceConversation');
  }

  // A message to chosen clients reaches only them; history shows it to them only.
  const mine = JSON.stringify({ _lctype: -1, _lctext: 'only for Jerry' });
  const only = await rest(h, app, 'POST', `${base}/${cid}/messages`, { from_client: 'NoticeBot', to_clients: ['Jerry'], message: mine });
  const [jmsg] = await jerryMsgs.waitFor(Event.MESSAGE, (m) => m.id === only['msg-id']);
  assert.equal(jmsg.text, 'only for Jerry');
  const jerryHistory = await jconv.queryMessages({ limit: 10 });
  assert.deepEqual(jerryHistory.map((m) => m.text), ['hello subscribers', 'only for Jerry']);
  const tomHistory = await conv.queryMessages({ limit: 10 });
  assert.deepEqual(tomHistory.map((m) => m.text), ['hello subscribers']);
  const restHistory = await rest(h, app, 'GET', `${base}/${cid}/subscribers/Jerry/messages`);
  assert.deepEqual(restHistory.map((m) => m['msg-id']), [only['msg-id'], sent['msg-id']]);
  assert.equal(tomMsgs.log.filter(({ args }) => args[0].id === only['msg-id']).length, 0);

  // A client's message to the system conversation is acknowledged, and
  // not delivered to the other subscribers.
  const up = await jconv.send(new jerryRT.sdk.realtime.TextMessage('help me'));
  assert.ok(up.id);
  assert.equal(tomMsgs.log.filter(({ args }) => args[0].id === up.id).length, 0);

  // unsubscribe() is quit(): no more broadcasts for Tom.
  assert.equal(await conv.unsubscribe(), conv);
  assert.deepEqual(await rest(h, app, 'GET', `${base}/${cid}/subscribers/count`), { count: 1 });
  const after2 = await rest(h, app, 'POST', `${base}/${cid}/broadcasts`, { from_client: 'NoticeBot', message: 'second' });
  await jerryMsgs.waitFor(Event.MESSAGE, (m) => m.id === after2['msg-id']);
  await tom.getQuery().equalTo('objectId', cid).find(); // barrier: Tom's pushes before this answer
  assert.equal(tomMsgs.log.filter(({ args }) => args[0].id === after2['msg-id']).length, 0);

  // The REST API updates and deletes it; REST calls on a normal
  // conversation answer 4313.
  await rest(h, app, 'PUT', `${base}/${cid}`, { name: 'News' });
  const listed = await rest(h, app, 'GET', `${base}?where=${encodeURIComponent(JSON.stringify({ name: 'News' }))}`);
  assert.deepEqual(listed.results.map((r) => [r.objectId, r.sys]), [[cid, true]]);
  const normal = await tom.createConversation({ members: ['Jerry'] });
  await assert.rejects(rest(h, app, 'POST', `${base}/${normal.id}/broadcasts`, { from_client: 'NoticeBot', message: 'x' }),
    (err) => err.status === 400 && err.body.code === 4313);
  assert.deepEqual(await rest(h, app, 'DELETE', `${base}/${cid}`), {});
  assert.deepEqual(await tom.getServiceConversationQuery().find(), []);
});

test('system conversation: a subscriber offline during a broadcast gets it as unread; read clears it', async () => {
  const app = h.app();
  const base = '/1.2/rtm/service-conversations';
  const { objectId: cid } = await rest(h, app, 'POST', base, { name: 'Offline notices' });
  assert.deepEqual(await rest(h, app, 'POST', `${base}/${cid}/subscribers`, { client_id: 'Mary' }), {});
  const text = JSON.stringify({ _lctype: -1, _lctext: 'while you were away' });
  const sent = await rest(h, app, 'POST', `${base}/${cid}/broadcasts`, { from_client: 'NoticeBot', message: text });

  const rt = h.realtime(app, 2);
  const { Event } = rt.sdk.realtime;
  const mary = await rt.createIMClient('Mary');
  const rec = new Recorder(mary, [Event.UNREAD_MESSAGES_COUNT_UPDATE], 'Mary');
  const [convs] = await rec.waitFor(Event.UNREAD_MESSAGES_COUNT_UPDATE, (cs) => cs.some((c) => c.id === cid));
  const conv = convs.find((c) => c.id === cid);
  assert.equal(conv.constructor.name, 'ServiceConversation');
  assert.equal(conv.unreadMessagesCount, 1);
  assert.equal(conv.lastMessage.id, sent['msg-id']);
  assert.equal(conv.lastMessage.text, 'while you were away');
  assert.deepEqual(await rest(h, app, 'GET', `/1.2/rtm/clients/Mary/unread-count?conv_id=${cid}`), { count: 1 });
  await conv.read();
  assert.equal(conv.unreadMessagesCount, 0);
  await poll('the read to reach the server', async () =>
    (await rest(h, app, 'GET', `/1.2/rtm/clients/Mary/unread-count?conv_id=${cid}`)).count === 0);
});
