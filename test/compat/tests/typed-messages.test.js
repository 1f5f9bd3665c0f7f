'use strict';
// Seed guide: rich-media messages through leancloud-storage's AV.File and the
// typed-messages plugin (examples 1456, 1529, 1595, 1700, 1768, 1833, 2050,
// 3560), the storage-REST shim (node/storage) and a custom message type.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Harness, sdk } = require('../lib/harness');
const ex = require('../lib/examples');
const { Recorder } = require('../lib/events');

const { Event } = sdk.realtime;
const h = new Harness();
before(() => h.start());
after(() => h.stop());

// A browser file input, as the examples read it: $('#id')[0].files[0]. In
// Node.js the SDK uploads a Buffer (a WHATWG File/Blob is not supported by its
// Node adapter; see STORAGE-REST.md).
function fileInput(files) {
  return (selector) => {
    assert.ok(files[selector], `unexpected selector ${selector}`);
    return [{ files: [files[selector]] }];
  };
}

const JPEG = Buffer.from('ffd8ffe000104a46494600010100000100010000ffd9', 'hex');
const MP3 = Buffer.from('494433030000000000000000fffb9064', 'hex');

// defineCustom registers a positive custom type on a device, as an app would.
function defineCustom(rt) {
  const { TypedMessage, messageType, messageField } = rt.sdk.realtime;
  class CustomMessage extends TypedMessage {
    constructor(foo) {
      super();
      this.foo = foo;
    }
  }
  messageType(1)(CustomMessage);
  messageField('foo')(CustomMessage);
  rt.register(CustomMessage);
  return CustomMessage;
}

async function setup() {
  const app = h.app();
  const AV = h.initAV(app, 0);
  const tomRT = h.realtime(app, 0);
  const jerryRT = h.realtime(app, 1);
  const TomCustom = defineCustom(tomRT);
  const JerryCustom = defineCustom(jerryRT);
  const tom = await tomRT.createIMClient('Tom');
  const jerry = await jerryRT.createIMClient('Jerry');
  const conversation = await tom.createConversation({ members: ['Jerry'], name: 'media' });
  const rec = new Recorder(jerry, [Event.MESSAGE], 'jerry');
  return { app, AV, tomRT, jerryRT, tom, jerry, conversation, rec, TomCustom, JerryCustom };
}

async function received(rec, id) {
  const [m, c] = await rec.waitFor(Event.MESSAGE, (msg) => msg.id === id);
  return { m, c };
}

test('typed messages: image, audio, location with files uploaded to / linked from our server (examples 1456, 1529, 1595, 1700, 1768, 1833, 3560)', async () => {
  const s = await setup();
  const tomTyped = s.tomRT.sdk.typed;
  const jerryTyped = s.jerryRT.sdk.typed;

  const imageHandler = await ex.run(1595, { client: s.jerry }, { require: s.jerryRT.sdk.require });
  assert.equal(imageHandler.thrown, null);

  // 1456: upload a picture from a file input, send it with text and attributes.
  const upload = await ex.run(1456, {
    $: fileInput({ '#photoFileUpload': JPEG }), AV: s.AV, ImageMessage: tomTyped.ImageMessage, conversation: s.conversation,
  });
  await upload.console.waitFor('发送成功');
  const sentImage = await ex.settle(upload, 'send');
  let { m } = await received(s.rec, sentImage.id);
  assert.ok(m instanceof jerryTyped.ImageMessage);
  assert.equal(m.type, -2);
  assert.equal(m.getText(), '发自我的 Ins');
  assert.deepEqual(m.getAttributes(), { location: '旧金山' });
  let file = m.getFile();
  assert.equal(file.name(), 'avatar.jpg');
  assert.equal(file.metaData('size'), JPEG.length);
  assert.match(file.url(), new RegExp(`^http://${h.node(0).client}/1\\.1/files/`));
  const body = Buffer.from(await (await fetch(file.url())).arrayBuffer());
  assert.deepEqual(body, JPEG);
  await imageHandler.console.waitFor(`收到图像消息，URL：${file.url()}`);

  // 1529: an image that only links to an external URL.
  const linked = await ex.run(1529, { conversation: s.conversation }, { require: s.tomRT.sdk.require });
  await linked.console.waitFor('发送成功');
  ({ m } = await received(s.rec, (await ex.settle(linked, 'send')).id));
  assert.ok(m instanceof jerryTyped.ImageMessage);
  assert.equal(m.getText(), '萌妹子一枚');
  assert.equal(m.getFile().url(), 'http://pic2.zhimg.com/6c10e6053c739ed0ce676a0aff15cf1c.gif');
  assert.equal(m.getFile().name(), '萌妹子');
  assert.equal(typeof m.getFile().id, 'string');
  await imageHandler.console.waitFor('收到图像消息，URL：http://pic2.zhimg.com/6c10e6053c739ed0ce676a0aff15cf1c.gif');

  // 1700: upload audio.
  const audio = await ex.run(1700, { $: fileInput({ '#musicFileUpload': MP3 }), conversation: s.conversation }, { require: s.tomRT.sdk.require });
  await audio.console.waitFor('发送成功');
  ({ m } = await received(s.rec, (await ex.settle(audio, 'send')).id));
  assert.ok(m instanceof jerryTyped.AudioMessage);
  assert.equal(m.type, -3);
  assert.equal(m.getText(), '听听人类的神曲');
  assert.equal(m.getFile().name(), '忐忑.mp3');
  assert.deepEqual(Buffer.from(await (await fetch(m.getFile().url())).arrayBuffer()), MP3);

  // 1768: audio by URL.
  const audioURL = await ex.run(1768, { conversation: s.conversation }, { require: s.tomRT.sdk.require });
  await audioURL.console.waitFor('发送成功');
  ({ m } = await received(s.rec, (await ex.settle(audioURL, 'send')).id));
  assert.ok(m instanceof jerryTyped.AudioMessage);
  assert.equal(m.getText(), '来自苹果发布会现场的录音');
  assert.equal(m.getFile().url(), 'https://some.website.com/apple.acc');

  // 1833: location.
  const loc = await ex.run(1833, { conversation: s.conversation }, { require: s.tomRT.sdk.require });
  await loc.console.waitFor('发送成功');
  ({ m } = await received(s.rec, (await ex.settle(loc, 'send')).id));
  assert.ok(m instanceof jerryTyped.LocationMessage);
  assert.equal(m.type, -5);
  assert.equal(m.getText(), '蛋糕店的位置');
  assert.equal(m.getLocation().latitude, 31.3753285);
  assert.equal(m.getLocation().longitude, 120.9664658);

  // 3560: history filtered by type returns just the two images, oldest first.
  const jerryConv = await s.jerry.getConversation(s.conversation.id);
  const images = await ex.run(3560, { conversation: jerryConv, ImageMessage: jerryTyped.ImageMessage });
  const logged = await images.console.waitFor(() => true);
  assert.equal(logged.level, 'log');
  const list = await ex.settle(images, 'queryMessages');
  assert.equal(list.length, 2);
  assert.ok(list.every((x) => x instanceof jerryTyped.ImageMessage));
  assert.deepEqual(list.map((x) => x.getText()), ['发自我的 Ins', '萌妹子一枚']);
  assert.ok(list[0].timestamp < list[1].timestamp);
});

test('receiving every type, metadata included, and a custom type (example 2050)', async () => {
  const s = await setup();
  const { AV } = s;
  const T = s.tomRT.sdk.typed;
  const jerryConv = await s.jerry.getConversation(s.conversation.id);
  const handler = await ex.run(2050, { client: s.jerry, conversation: jerryConv }, { require: s.jerryRT.sdk.require });
  assert.equal(handler.thrown, null);
  const convMessages = new Recorder(jerryConv, [Event.MESSAGE], 'jerry conversation');

  const withURL = async (name, url, meta) => {
    const f = AV.File.withURL(name, url, meta);
    await f.save();
    return f;
  };
  const doc = new AV.File('report.pdf', Buffer.from('%PDF-1.4 tiny'));
  await doc.save();
  const sends = [
    [new s.tomRT.sdk.realtime.TextMessage('hello'), (m) => `收到文本消息，内容：hello，ID：${m.id}`],
    [new T.FileMessage(doc), () => `收到文件消息，URL：${doc.url()}，大小：13`],
    [new T.ImageMessage(await withURL('cat.png', 'https://img.example/cat.png', { width: 640, height: 480 })), () => '收到图像消息，URL：https://img.example/cat.png，宽度：640'],
    [new T.AudioMessage(await withURL('song.mp3', 'https://a.example/song.mp3', { duration: 42 })), () => '收到音频消息，URL：https://a.example/song.mp3，长度：42'],
    [new T.VideoMessage(await withURL('clip.mp4', 'https://v.example/clip.mp4', { duration: 7.5 })), () => '收到视频消息，URL：https://v.example/clip.mp4，长度：7.5'],
    [new T.LocationMessage(new AV.GeoPoint(39.97, 116.37)), () => '收到位置消息，纬度：39.97，经度：116.37'],
  ];
  for (const [msg, line] of sends) {
    const sent = await s.conversation.send(msg);
    await handler.console.waitFor(line(sent));
  }

  const custom = new s.TomCustom('bar');
  custom.setText('custom text');
  custom.setAttributes({ k: 1 });
  const sentCustom = await s.conversation.send(custom);
  await handler.console.waitFor((e) => e.level === 'warn' && e.text === '收到未知类型消息');
  const { m } = await received(s.rec, sentCustom.id);
  assert.ok(m instanceof s.JerryCustom);
  assert.equal(m.type, 1);
  assert.equal(m.foo, 'bar');
  assert.equal(m.getText(), 'custom text');
  assert.deepEqual(m.getAttributes(), { k: 1 });
  // The conversation-level MESSAGE event fires too, once per message.
  await convMessages.waitCount(Event.MESSAGE, sends.length + 1);

  // The custom type is kept in history and filterable by its type.
  const history = await jerryConv.queryMessages({ type: 1 });
  assert.equal(history.length, 1);
  assert.equal(history[0].foo, 'bar');
  const all = await jerryConv.queryMessages({ limit: 100 });
  assert.deepEqual(all.map((x) => x.type), [-1, -6, -2, -3, -4, -5, 1]);
  assert.equal(all[2].getFile().metaData('width'), 640);
  assert.deepEqual(handler.console.errors(), []);
});

test('AV.File upload over the limit is refused with a JSON 413', async () => {
  const app = h.app();
  const AV = h.initAV(app, 0);
  const limit = 3 * 1024 * 1024;
  const big = new AV.File('big.bin', Buffer.alloc(limit + 1));
  const err = await big.save().then(() => null, (e) => e);
  assert.ok(err, 'saving a 3 MiB + 1 byte file must fail');
  const base = `http://${h.node(0).client}`;
  const headers = { 'X-LC-Id': app.appId, 'X-LC-Key': app.appKey, 'Content-Type': 'application/json' };
  const tok = await (await fetch(`${base}/1.1/fileTokens`, {
    method: 'POST', headers, body: JSON.stringify({ name: 'big.bin', metaData: {} }),
  })).json();
  const res = await fetch(tok.upload_url, { method: 'PUT', body: Buffer.alloc(limit + 1) });
  assert.equal(res.status, 413);
  const json = await res.json();
  assert.equal(json.code, 413);
  assert.match(json.error, /3145728-byte/);
  // A wrong token is refused before the body is read.
  const bogus = await fetch(`${base}/1.1/fileUpload/none?app=${app.appId}&token=x`, { method: 'PUT', body: Buffer.alloc(16) });
  assert.equal(bogus.status, 403);
});
