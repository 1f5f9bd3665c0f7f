'use strict';
// The createConversation reference (example 248) and [TEST]-tagged behaviours
// of the spec that the SDK surfaces cheaply: error reasons, temporary
// conversation TTL, unique conversations, single-device tag conflicts.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness, sdk, poll } = require('../lib/harness');
const ex = require('../lib/examples');
const { Recorder, rejection } = require('../lib/events');

const { Event } = sdk.realtime;
const h = new Harness();
before(() => h.start());
after(() => h.stop());

test('createConversation options: normal, chat room, temporary (example 248)', async () => {
  const app = h.app();
  const rt = h.realtime(app, 0);
  const tom = await rt.createIMClient('Tom');
  const made = [];
  const createConversation = (o) => {
    const p = tom.createConversation(o);
    made.push(p);
    return p;
  };
  const base = { createConversation, m: ['Jerry'], name: 'n', transient: false, unique: false, tempConv: false, tempConvTTL: 0 };
  for (const env of [base, { ...base, transient: true }, { ...base, tempConv: true, tempConvTTL: 3600 }]) {
    const ran = await ex.run(248, env);
    assert.equal(ran.thrown, null);
  }
  const [normal, room, temp] = await Promise.all(made);
  const R = rt.sdk.realtime;
  assert.ok(normal instanceof R.Conversation);
  assert.equal(normal.name, 'n');
  assert.deepEqual([...normal.members].sort(), ['Jerry', 'Tom']);
  // createConversation({transient: true}) makes a chat room on the server
  // (no persistent members); the SDK marks it transient.
  const roomOnServer = await tom.getConversation(room.id, true);
  assert.ok(roomOnServer instanceof R.ChatRoom, `got ${roomOnServer.constructor.name}`);
  assert.equal(roomOnServer.transient, true);
  // leancloud-realtime 5's createConversation has no tempConv option: it
  // sends tempConv/tempConvTTL as custom attributes (temporary conversations
  // come from createTemporaryConversation, tested below), so the server
  // creates a normal conversation with those two columns.
  assert.ok(temp instanceof R.Conversation);
  assert.doesNotMatch(temp.id, /^_tmp:/);
  const tempOnServer = await tom.getConversation(temp.id, true);
  assert.equal(tempOnServer.get('tempConv'), true);
  assert.equal(tempOnServer.get('tempConvTTL'), 3600);
});

test('error reasons: INVALID_MESSAGING_TARGET for a non-member, TEMPORARY_CONVERSATION_EXPIRED after a 1 s TTL', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0);
  const tom = await tomRT.createIMClient('Tom');
  const williamRT = h.realtime(app, 1);
  const william = await williamRT.createIMClient('William');
  const conv = await tom.createConversation({ members: ['Jerry'] });
  const wc = await william.getConversation(conv.id);
  const err = await rejection(wc.send(new williamRT.sdk.realtime.TextMessage('let me in')));
  assert.equal(err.code, 4401);
  assert.equal(err.message, 'INVALID_MESSAGING_TARGET');

  const temp = await tom.createTemporaryConversation({ members: ['Jerry'], ttl: 1 });
  const created = Date.now();
  await temp.send(new tomRT.sdk.realtime.TextMessage('quick'));
  await poll('the 1 s TTL to pass', () => Date.now() > created + 1100, 5000);
  const expired = await rejection(temp.send(new tomRT.sdk.realtime.TextMessage('too late')));
  // The server answers 4303 CONVERSATION_NOT_FOUND; the SDK turns that into
  // its own 4323 with a canned message (spec §3.5.2).
  assert.equal(expired.code, 4323);
  assert.equal(expired.message, 'Temporary conversation expired or does not exist.');
});

test('unique conversations: same member set returns the same conversation, unique: false creates a new one', async () => {
  const app = h.app();
  const tom = await h.realtime(app, 0).createIMClient('Tom');
  const jerry = await h.realtime(app, 1).createIMClient('Jerry');
  const a = await tom.createConversation({ members: ['Jerry'], name: 'first', unique: true });
  const b = await jerry.createConversation({ members: ['Tom'], name: 'second', unique: true });
  assert.equal(b.id, a.id);
  const fetched = await jerry.getConversation(a.id, true);
  assert.equal(fetched.name, 'first');
  const c = await tom.createConversation({ members: ['Jerry'], unique: false });
  assert.notEqual(c.id, a.id);
  const ta = await tom.createTemporaryConversation({ members: ['Jerry'] });
  const tb = await tom.createTemporaryConversation({ members: ['Jerry'] });
  assert.equal(tb.id, ta.id);
});

test('single-device login: a second login with the same tag kicks the first with CONFLICT', async () => {
  const app = h.app();
  const phone1 = await h.realtime(app, 0).createIMClient('Tom', { tag: 'Mobile' });
  const rec = new Recorder(phone1, [Event.CONFLICT, Event.CLOSE], 'phone1');
  const laptop = await h.realtime(app, 1).createIMClient('Tom');
  const phone2 = await h.realtime(app, 2).createIMClient('Tom', { tag: 'Mobile' });
  const [payload] = await rec.waitFor(Event.CONFLICT);
  assert.equal(payload.reason, 'SESSION_CONFLICT');
  // Sessions without the tag are untouched; the new phone works.
  const conv = await phone2.createConversation({ members: ['Jerry'] });
  assert.ok(conv.id);
  const lc = await laptop.getConversation(conv.id);
  assert.equal(lc.id, conv.id);
});

test('noBinary: the Base64 text subprotocol (lc.proto2base64.3) works like the binary one', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0, { noBinary: true });
  const tom = await tomRT.createIMClient('Tom');
  const jerry = await h.realtime(app, 1).createIMClient('Jerry');
  const rec = new Recorder(jerry, [Event.MESSAGE], 'jerry');
  const conv = await tom.createConversation({ members: ['Jerry'], name: 'text frames' });
  const sent = await conv.send(new tomRT.sdk.realtime.TextMessage('over base64'));
  const [m] = await rec.waitFor(Event.MESSAGE, (x) => x.id === sent.id);
  assert.equal(m.text, 'over base64');
  const history = await conv.queryMessages({ limit: 1 });
  assert.equal(history[0].id, sent.id);
});
