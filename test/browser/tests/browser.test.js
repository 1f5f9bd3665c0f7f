'use strict';
// The official LeanCloud browser builds (leancloud-storage's av-min.js,
// leancloud-realtime's im-browser.min.js, the typed-messages plugin) in
// headless Chromium against imnode, from a page on another origin than the
// node: Tom and Jerry's 1:1 chat, the seed guide's file-input example (line
// 1456) with a real <input type=file> filled by playwright and the real
// jQuery, and queries by id. Every REST call is cross-origin, so this also
// checks the node's CORS answers (preflights included) as a browser enforces
// them.
//
// Tom and Jerry are two browser contexts (two devices; the SDK allows one
// Realtime per app in a page). The tests share them and run in order; each
// test needs only the conversation from the first one.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness } = require('../lib/harness');

const h = new Harness();
let tom;
let jerry;
let conv;

before(async () => {
  await h.start();
  [tom, jerry] = await Promise.all([h.open('Tom'), h.open('Jerry')]);
});
after(() => h.stop());

// A tiny but real JPEG (SOI, JFIF APP0, EOI).
const JPEG = Buffer.from('ffd8ffe000104a46494600010100000100010000ffd9', 'hex');

// step runs fn and, on failure, appends what the pages and the node logged.
async function step(what, fn) {
  try {
    return await fn();
  } catch (e) {
    e.message = `${what}: ${e.message}\n--- diagnostics ---\n${h.diagnostics()}`;
    throw e;
  }
}

test('1:1 chat: Tom creates a unique conversation with Jerry and sends a TextMessage; Jerry gets Event.MESSAGE', async () => {
  // Both log in (a WebSocket from the page's origin to the node's).
  const ids = await step('login', () => Promise.all([
    tom.page.evaluate(() => window.bt.login('Tom')),
    jerry.page.evaluate(() => window.bt.login('Jerry')),
  ]));
  assert.deepEqual(ids, ['Tom', 'Jerry']);

  conv = await step('createConversation', () =>
    tom.page.evaluate(() => window.bt.createConversation(['Jerry'], 'Tom & Jerry')));
  assert.match(conv.id, /^[0-9a-f]{24}$/);
  assert.equal(conv.name, 'Tom & Jerry');
  assert.deepEqual(conv.members, ['Jerry', 'Tom']);

  const sent = await step('send text', () => tom.page.evaluate((cid) => window.bt.sendText(cid, '耗子，起床！'), conv.id));
  assert.equal(sent.from, 'Tom');
  assert.equal(sent.text, '耗子，起床！');
  const got = await step('Jerry receives the text', () =>
    jerry.page.evaluate((id) => window.bt.waitText(id, 10000), sent.id));
  assert.deepEqual(got, {
    id: sent.id, from: 'Tom', cid: conv.id, type: -1, isText: true, text: '耗子，起床！', conv,
  });

  // unique: Jerry asking for the same pair gets the same conversation.
  const again = await step('unique createConversation', () =>
    jerry.page.evaluate(() => window.bt.createConversation(['Tom'], 'Tom & Jerry')));
  assert.equal(again.id, conv.id);
});

test('queries by id: getConversation and the query language on objectId', async () => {
  assert.ok(conv, 'needs the conversation of the chat test');
  const byId = await step('getConversation', () =>
    jerry.page.evaluate((cid) => window.bt.getConversation(cid), conv.id));
  assert.deepEqual(byId, conv);
  const queried = await step('conversation query on objectId', () =>
    tom.page.evaluate((cid) => window.bt.queryConversation(cid), conv.id));
  assert.deepEqual(queried, [conv]);
});

test('seed guide line 1456 verbatim: photo from <input type=file> via $, AV.File save, ImageMessage; Jerry downloads it; file fetched by id', async () => {
  assert.ok(conv, 'needs the conversation of the chat test');
  // The photo comes from a real file input, filled the way a user picks one.
  await tom.page.setInputFiles('#photoFileUpload', { name: 'holiday.jpg', mimeType: 'image/jpeg', buffer: JPEG });
  assert.deepEqual(await tom.page.evaluate(() => window.bt.selectedFile()),
    { name: 'holiday.jpg', size: JPEG.length, type: 'image/jpeg', hex: JPEG.toString('hex') });

  const image = await step('example 1456 (file.save() then send ImageMessage)', () =>
    tom.page.evaluate((cid) => window.bt.runExample(1456, cid, 20000), conv.id));
  assert.equal(image.type, -2);

  const recv = await step('Jerry receives the image and downloads it', () =>
    jerry.page.evaluate((id) => window.bt.waitImage(id, 10000), image.id));
  assert.equal(recv.isImage, true);
  assert.equal(recv.type, -2);
  assert.equal(recv.text, '发自我的 Ins');
  assert.deepEqual(recv.attributes, { location: '旧金山' });
  assert.equal(recv.file.name, 'avatar.jpg');
  assert.equal(recv.file.size, JPEG.length);
  assert.match(recv.file.id, /^[0-9a-f]{24}$/);
  assert.ok(recv.file.url.startsWith(`${h.nodeOrigin}/1.1/files/`), recv.file.url);
  assert.deepEqual(recv.download, { status: 200, type: 'image/jpeg', hex: JPEG.toString('hex') });

  // The uploaded file, looked up by id through the storage SDK.
  const file = await step('AV.File fetch by id', () =>
    jerry.page.evaluate((id) => window.bt.fetchFile(id), recv.file.id));
  assert.deepEqual(file, recv.file);
});
