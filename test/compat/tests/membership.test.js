'use strict';
// Seed guide: group chat and the membership event table (lines ~1309-1322)
// with spec §3.4.4 and §3.6.3: who receives INVITED, KICKED, MEMBERS_JOINED
// and MEMBERS_LEFT, the initiator included. Tom, Jerry, Mary and William are
// pinned to nodes 0, 1, 2, 3 (modulo the number of nodes).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness, sdk } = require('../lib/harness');
const ex = require('../lib/examples');
const { Recorder } = require('../lib/events');

const { Event } = sdk.realtime;
const MEMBER_EVENTS = [Event.INVITED, Event.KICKED, Event.MEMBERS_JOINED, Event.MEMBERS_LEFT];
const h = new Harness();
before(() => h.start());
after(() => h.stop());

async function login(app, names) {
  const out = {};
  for (const [i, name] of names.entries()) {
    const realtime = h.realtime(app, i);
    const client = await realtime.createIMClient(name);
    out[name] = { realtime, client, rec: new Recorder(client, MEMBER_EVENTS, name) };
  }
  return out;
}

// barrier does a request/response round trip on every client: pushes the
// server sent before answering the operation's initiator arrive before it.
async function barrier(people, cid) {
  await Promise.all(Object.values(people).map((p) => p.client.getQuery().equalTo('objectId', cid).find()));
}

// checkRow waits for the required events of one table row, then (after a
// barrier) asserts that each client got exactly those for this conversation,
// plus at most the listed optional ones.
async function checkRow(row, people, cid, marks, required, optional = {}) {
  for (const [name, events] of Object.entries(required)) {
    for (const [event, check] of events) {
      const args = await people[name].rec.waitFor(event, (p, c) => c.id === cid, 10000, marks[name]);
      check(args[0], name);
    }
  }
  await barrier(people, cid);
  for (const [name, p] of Object.entries(people)) {
    const got = p.rec.log.slice(marks[name]).filter((e) => e.args[1] && e.args[1].id === cid).map((e) => e.event);
    const want = (required[name] || []).map(([e]) => e);
    const extra = got.filter((e) => !want.includes(e));
    const allowed = optional[name] || [];
    assert.deepEqual(extra.filter((e) => !allowed.includes(e)), [], `${row}: ${name} got unexpected ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    assert.deepEqual(want.filter((e) => !got.includes(e)), [], `${row}: ${name} got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    assert.ok(got.length <= want.length + allowed.length, `${row}: ${name} got duplicates: ${JSON.stringify(got)}`);
    marks[name] = p.rec.log.length;
  }
}

const joined = (members, by) => (p) => {
  assert.deepEqual([...p.members].sort(), [...members].sort());
  assert.equal(p.invitedBy, by);
};
const left = (members, by) => (p) => {
  assert.deepEqual([...p.members].sort(), [...members].sort());
  assert.equal(p.kickedBy, by);
};
const invitedBy = (by) => (p) => assert.equal(p.invitedBy, by);
const kickedBy = (by) => (p) => assert.equal(p.kickedBy, by);

function membersOf(entry) {
  return [...entry.args[1]].sort();
}

// add() and remove() resolve to a PartiallySuccess result in
// leancloud-realtime 4 and 5, not to the conversation the guide's callbacks
// name: the examples log `conversation.members` as undefined. What the SDK
// really reports is checked instead, plus the conversation's own member list.
function partial(entry) {
  assert.equal(entry.args[1], undefined);
}

test('membership event table: add, remove, join, quit (examples 660, 736, 941, 997, 1100, 1170, 1217)', async () => {
  const app = h.app();
  const people = await login(app, ['Tom', 'Jerry', 'Mary', 'William']);
  const { Tom, Jerry, Mary, William } = people;
  const marks = { Tom: 0, Jerry: 0, Mary: 0, William: 0 };

  const conversation = await Tom.client.createConversation({ members: ['Jerry'], name: 'Tom & Jerry', unique: true });
  const cid = conversation.id;
  // Creation (§3.4.4): every member, the creator included, gets joined + members_joined{m = all}.
  await checkRow('create', people, cid, marks, {
    Tom: [[Event.INVITED, invitedBy('Tom')], [Event.MEMBERS_JOINED, joined(['Tom', 'Jerry'], 'Tom')]],
    Jerry: [[Event.INVITED, invitedBy('Tom')], [Event.MEMBERS_JOINED, joined(['Tom', 'Jerry'], 'Tom')]],
  });

  // Jerry's handlers from the guide log every membership event he sees.
  const jerryJoined = await ex.run(736, { jerry: Jerry.client, Event });
  const jerryLeft = await ex.run(997, { jerry: Jerry.client, Event });

  // Row 1: Tom adds Mary.
  const add = await ex.run(660, { tom: Tom.client }, { placeholders: { CONVERSATION_ID: cid } });
  partial(await add.console.waitFor('添加成功'));
  assert.equal(await ex.settle(add, 'getConversation'), conversation);
  assert.deepEqual([...conversation.members].sort(), ['Jerry', 'Mary', 'Tom']);
  await checkRow('Tom adds Mary', people, cid, marks, {
    Tom: [[Event.MEMBERS_JOINED, joined(['Mary'], 'Tom')]],
    Jerry: [[Event.MEMBERS_JOINED, joined(['Mary'], 'Tom')]],
    Mary: [[Event.INVITED, invitedBy('Tom')], [Event.MEMBERS_JOINED, joined(['Mary'], 'Tom')]],
  });
  await jerryJoined.console.waitFor(`["Mary"] Tom ${cid}`);

  // Row 2: Tom removes Mary.
  const remove = await ex.run(941, { conversation });
  partial(await remove.console.waitFor('移除成功'));
  const removeResult = await ex.settle(remove, 'remove');
  assert.deepEqual(removeResult.successfulClientIds, ['Mary']);
  assert.deepEqual(removeResult.failures, []);
  assert.deepEqual([...conversation.members].sort(), ['Jerry', 'Tom']);
  await checkRow('Tom removes Mary', people, cid, marks, {
    Tom: [[Event.MEMBERS_LEFT, left(['Mary'], 'Tom')]],
    Jerry: [[Event.MEMBERS_LEFT, left(['Mary'], 'Tom')]],
    Mary: [[Event.KICKED, kickedBy('Tom')]],
  }, { Mary: [Event.MEMBERS_LEFT] });
  await jerryLeft.console.waitFor(`["Mary"] Tom ${cid}`);

  // Row 3: William joins by himself.
  const jerryJoined2 = await ex.run(1170, { jerry: Jerry.client, Event });
  const join = await ex.run(1100, { william: William.client }, { placeholders: { CONVERSATION_ID: cid } });
  const joinedEntry = await join.console.waitFor('加入成功');
  assert.deepEqual(membersOf(joinedEntry), ['Jerry', 'Tom', 'William']);
  await checkRow('William joins', people, cid, marks, {
    Tom: [[Event.MEMBERS_JOINED, joined(['William'], 'William')]],
    Jerry: [[Event.MEMBERS_JOINED, joined(['William'], 'William')]],
    William: [[Event.INVITED, invitedBy('William')], [Event.MEMBERS_JOINED, joined(['William'], 'William')]],
  });
  await jerryJoined2.console.waitFor(`["William"] William ${cid}`);

  // Row 4: Jerry quits.
  const jerryConv = await Jerry.client.getConversation(cid);
  const quit = await ex.run(1217, { conversation: jerryConv });
  const quitEntry = await quit.console.waitFor('退出成功');
  assert.deepEqual(membersOf(quitEntry), ['Tom', 'William']);
  await checkRow('Jerry quits', people, cid, marks, {
    Tom: [[Event.MEMBERS_LEFT, left(['Jerry'], 'Jerry')]],
    Jerry: [[Event.KICKED, kickedBy('Jerry')], [Event.MEMBERS_LEFT, left(['Jerry'], 'Jerry')]],
    William: [[Event.MEMBERS_LEFT, left(['Jerry'], 'Jerry')]],
  });

  // The server's member list agrees.
  const fetched = await Tom.client.getConversation(cid, true);
  assert.deepEqual([...fetched.members].sort(), ['Tom', 'William']);
  assert.equal(await fetched.count(), 2);
});

test('group chat: create with several members, welcome message, a member quits (examples 837, 892, 1217, 1268)', async () => {
  const app = h.app();
  const people = await login(app, ['Tom', 'Jerry', 'Mary']);
  const { Tom, Jerry, Mary } = people;
  const messages = { Jerry: [], Mary: [] };
  for (const name of ['Jerry', 'Mary']) people[name].client.on(Event.MESSAGE, (m, c) => messages[name].push([m, c]));

  const created = await ex.run(837, { tom: Tom.client });
  assert.equal(created.thrown, null);
  const conversation = await ex.settle(created, 'createConversation');
  assert.equal(conversation.name, 'Tom & Jerry & friends');
  assert.deepEqual([...conversation.members].sort(), ['Jerry', 'Mary', 'Tom']);
  assert.deepEqual(created.console.errors(), []);

  const sent = await ex.run(892, { conversation, TextMessage: Tom.realtime.sdk.realtime.TextMessage });
  const message = await ex.settle(sent, 'send');
  for (const name of ['Jerry', 'Mary']) {
    const [m, c] = await people[name].rec.waitFor(Event.MEMBERS_JOINED, (p, c2) => c2.id === conversation.id)
      .then(() => pollMessage(messages[name], message.id));
    assert.equal(m.text, '大家好，欢迎来到我们的群聊对话');
    assert.equal(m.from, 'Tom');
    assert.equal(c.id, conversation.id);
  }

  const maryHandler = await ex.run(1268, { mary: Mary.client, Event });
  const jerryConv = await Jerry.client.getConversation(conversation.id);
  const quit = await ex.run(1217, { conversation: jerryConv });
  const entry = await quit.console.waitFor('退出成功');
  assert.deepEqual(membersOf(entry), ['Mary', 'Tom']);
  await maryHandler.console.waitFor(`["Jerry"] Jerry ${conversation.id}`);
});

async function pollMessage(list, id) {
  const { poll } = require('../lib/harness');
  return poll(`message ${id}`, () => list.find(([m]) => m.id === id));
}
