'use strict';
// `imnode import` read back with the official SDK: an app's conversations
// and history are made through the SDK in one app, imported into a second,
// empty app of the same cluster through the server REST API (the importer
// reads the source exactly as it reads LeanCloud's REST API), and the same
// clients then see identical history, unread counts and query results in
// both apps. Tom, Jerry and Spike are pinned to nodes 0, 1 and 2.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { Harness } = require('../lib/harness');
const { Recorder } = require('../lib/events');

const IMNODE = process.env.IMNODE_BIN || path.join(__dirname, '..', '..', '..', 'bin', 'imnode');
const h = new Harness();
before(() => h.start());
after(() => h.stop());

const people = ['Tom', 'Jerry', 'Spike'];

// view logs every client in and returns what it sees: the unread counts of
// the login summary, its conversations (default query and a custom-column
// query) and each conversation's history.
async function view(app, expectUnread) {
  const out = {};
  for (const [i, who] of people.entries()) {
    const rt = h.realtime(app, i);
    const { Event } = rt.sdk.realtime;
    const c = await rt.createIMClient(who);
    const unreadEvents = new Recorder(c, [Event.UNREAD_MESSAGES_COUNT_UPDATE], who);
    const unread = {};
    if (expectUnread[who]) {
      const [convs] = await unreadEvents.waitFor(Event.UNREAD_MESSAGES_COUNT_UPDATE);
      for (const conv of convs) unread[conv.id] = conv.unreadMessagesCount;
    }
    const describe = (convs) => convs.map((conv) => ({
      id: conv.id, name: conv.name, creator: conv.creator, members: [...conv.members].sort(),
      topic: conv.get('topic'), createdAt: conv.createdAt && conv.createdAt.getTime(),
      lastMessageAt: conv.lastMessageAt && conv.lastMessageAt.getTime(),
    })).sort((a, b) => a.id.localeCompare(b.id));
    const mine = describe(await c.getQuery().find());
    const cats = describe(await c.getQuery().equalTo('topic', 'cats').find());
    const history = {};
    for (const conv of await c.getQuery().find()) {
      const msgs = await conv.queryMessages({ limit: 100 });
      history[conv.id] = msgs.map((m) => ({
        id: m.id, from: m.from, timestamp: m.timestamp.getTime(), type: m.type, text: m.text,
        attributes: m.getAttributes ? m.getAttributes() : undefined, mentionList: m.mentionList,
        mentionedAll: m.mentionedAll, updatedAt: m.updatedAt && m.updatedAt.getTime(),
      }));
    }
    out[who] = { unread, mine, cats, history };
    await c.close();
  }
  return out;
}

test('imported conversations read the same through the SDK: history, unread, queries', async () => {
  assert.ok(!h.external, 'the import test needs harness-started nodes (two apps)');
  const src = h.app();
  const dst = h.app();

  // The source app's data, made through the SDK.
  const rts = people.map((_, i) => h.realtime(src, i));
  // Each client is a device of its own: messages are built with its SDK.
  const [T0, T1, T2] = rts.map((rt) => rt.sdk.realtime.TextMessage);
  const [tom, jerry, spike] = await Promise.all(people.map((who, i) => rts[i].createIMClient(who)));
  const pair = await tom.createConversation({ members: ['Jerry'], name: 'Tom & Jerry', unique: true, topic: 'cats' });
  const team = await tom.createConversation({ members: ['Jerry', 'Spike'], name: 'Team', unique: false, topic: 'dogs' });
  const jerryPair = await jerry.getConversation(pair.id);
  const jerryTeam = await jerry.getConversation(team.id);
  const spikeTeam = await spike.getConversation(team.id);
  let edited;
  let recalled;
  for (let i = 0; i < 12; i++) {
    const m = await pair.send(new T0(`pair ${i}`).setAttributes({ i }));
    if (i === 3) edited = m;
    if (i === 4) recalled = m;
    await jerryPair.send(new T1(`re ${i}`));
    await team.send(new T0(`team ${i}`).setMentionList(i % 4 === 0 ? ['Spike'] : []));
    if (i % 3 === 0) await spikeTeam.send(new T2(`woof ${i}`));
  }
  await pair.update(edited, new T0('pair 3, edited'));
  await pair.recall(recalled);
  await jerryPair.read(); // Jerry has read the pair conversation, not Team
  await jerryTeam.send(new T1('last word'));
  await Promise.all([tom.close(), jerry.close(), spike.close()]);

  // Import it into the empty second app.
  const base = (i) => `http://${h.node(i).client}`;
  const { stdout } = await promisify(execFile)(IMNODE, [
    'import', '--source-url', base(0), '--source-app-id', src.appId,
    '--target-url', base(1), '--target-app-id', dst.appId, '--progress', 'lines',
  ], { env: { ...process.env, IMPORT_SOURCE_MASTER_KEY: src.masterKey, IMPORT_TARGET_MASTER_KEY: dst.masterKey }, timeout: 120000 });
  assert.match(stdout, /new on the target: 2 conversations, \d+ messages \(0 were there already\)/);

  // Tom has unread replies, Jerry the Team messages, Spike both.
  const expectUnread = { Tom: true, Jerry: true, Spike: true };
  const before = await view(src, expectUnread);
  const afterImport = await view(dst, expectUnread);
  for (const who of people) {
    assert.ok(Object.keys(before[who].unread).length > 0, `${who} has unread conversations in the source`);
    assert.deepEqual(afterImport[who].unread, before[who].unread, `${who}'s unread counts`);
    assert.deepEqual(afterImport[who].mine, before[who].mine, `${who}'s conversations`);
    assert.deepEqual(afterImport[who].cats, before[who].cats, `${who}'s topic query`);
    assert.deepEqual(afterImport[who].history, before[who].history, `${who}'s history`);
  }
  assert.equal(before.Tom.history[pair.id].length, 24);
  assert.equal(before.Tom.cats.length, 1);
  assert.ok(before.Tom.history[pair.id].some((m) => m.text === 'pair 3, edited'));
});
