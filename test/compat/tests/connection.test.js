'use strict';
// Seed guide: logout (example 3855) and connection events while the node is
// killed and restarted on the same port and data dir (example 3908).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness, sdk } = require('../lib/harness');
const ex = require('../lib/examples');
const { Recorder } = require('../lib/events');

const { Event } = sdk.realtime;
const h = new Harness();
before(() => h.start());
after(() => h.stop());

test('DISCONNECT, SCHEDULE, RETRY, RECONNECT across a node restart; messages survive (example 3908)', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0);
  const tom = await tomRT.createIMClient('Tom');
  const jerryRT = h.realtime(app, 0);
  const jerry = await jerryRT.createIMClient('Jerry');
  const conversation = await tom.createConversation({ members: ['Jerry'], name: 'restart' });
  const before = await conversation.send(new tomRT.sdk.realtime.TextMessage('before restart'));

  const ran = await ex.run(3908, { realtime: tomRT }, { require: tomRT.sdk.require });
  assert.equal(ran.thrown, null);
  // IMClient#RECONNECT follows the automatic re-login; Realtime#RECONNECT only
  // the reopened socket. Messages reach a client once it has re-logged in.
  const jerryEvents = new Recorder(jerry, [Event.RECONNECT], 'jerry client');
  const tomEvents = new Recorder(tom, [Event.RECONNECT], 'tom client');

  await h.restart(0, {
    signal: 'SIGKILL',
    // The client notices the dead socket and schedules its first retry while
    // the node is down.
    beforeStart: () => ran.console.waitFor('1000 ms 后进行第 1 次重连', 15000),
  });
  await ran.console.waitFor('与服务端连接恢复', 30000);
  const logs = ran.console.logs();
  assert.equal(logs[0], '服务器连接已断开');
  assert.equal(logs[1], '1000 ms 后进行第 1 次重连');
  assert.equal(logs[2], '正在进行第 1 次重连');
  assert.equal(logs[logs.length - 1], '与服务端连接恢复');
  // Retries back off 1 s, 2 s, 4 s ... until one succeeds.
  const schedules = logs.filter((l) => l.includes('ms 后进行第'));
  schedules.forEach((l, i) => assert.equal(l, `${1000 * 2 ** i} ms 后进行第 ${i + 1} 次重连`));
  // No browser network events in Node.js.
  assert.ok(!logs.includes('离线（网络连接已断开）') && !logs.includes('已恢复在线'));
  await jerryEvents.waitFor(Event.RECONNECT, () => true, 30000);
  await tomEvents.waitFor(Event.RECONNECT, () => true, 30000);

  // The sessions were re-opened: messages flow and the history survived.
  const rec = new Recorder(jerry, [Event.MESSAGE], 'jerry');
  const after = await conversation.send(new tomRT.sdk.realtime.TextMessage('after restart'));
  const [m] = await rec.waitFor(Event.MESSAGE, (x) => x.id === after.id);
  assert.equal(m.text, 'after restart');
  const jerryConv = await jerry.getConversation(conversation.id);
  const history = await jerryConv.queryMessages({ limit: 10 });
  assert.deepEqual(history.map((x) => x.id), [before.id, after.id]);
});

test('logout with tom.close() (example 3855)', async () => {
  const app = h.app();
  const tomRT = h.realtime(app, 0);
  const tom = await tomRT.createIMClient('Tom');
  const jerry = await h.realtime(app, 1).createIMClient('Jerry');
  assert.deepEqual(await jerry.ping(['Tom']), ['Tom']);
  const ran = await ex.run(3855, { tom });
  await ran.console.waitFor('Tom 退出登录');
  await ex.settle(ran, 'close');
  const { poll } = require('../lib/harness');
  await poll('Tom offline', async () => (await jerry.ping(['Tom'])).length === 0);
  // He can log in again later.
  const again = await h.realtime(app, 2).createIMClient('Tom');
  assert.equal(again.id, 'Tom');
});

test('pause/resume: OFFLINE and ONLINE events, and an INVITED that happened while offline is replayed (example 3908, spec §1.7 reliable notifications)', async () => {
  const app = h.app();
  const { poll } = require('../lib/harness');
  const tom = await h.realtime(app, 0).createIMClient('Tom');
  const jerryRT = h.realtime(app, 1);
  const jerry = await jerryRT.createIMClient('Jerry');
  const rec = new Recorder(jerry, [Event.INVITED], 'jerry');
  const ran = await ex.run(3908, { realtime: jerryRT }, { require: jerryRT.sdk.require });

  jerryRT.pause();
  await ran.console.waitFor('离线（网络连接已断开）');
  await poll('the node to see Jerry offline', async () => (await tom.ping(['Jerry'])).length === 0);
  const conv = await tom.createConversation({ members: ['Jerry'], name: 'while you were away' });

  jerryRT.resume();
  await ran.console.waitFor('已恢复在线');
  await ran.console.waitFor('与服务端连接恢复', 20000);
  const [payload, c] = await rec.waitFor(Event.INVITED, (p, c2) => c2.id === conv.id, 15000);
  assert.equal(payload.invitedBy, 'Tom');
  assert.equal(c.name, 'while you were away');
});
