/* global AV, $ */
'use strict';
// In-page side of the browser test: thin wrappers the test calls through
// playwright's page.evaluate. Everything here runs in Chromium against the
// official browser builds; waits are event-driven with deadlines.

(function () {
  function withTimeout(p, ms, what) {
    let t;
    return Promise.race([
      p,
      new Promise(function (_, reject) {
        t = setTimeout(function () { reject(new Error('timed out after ' + ms + ' ms waiting for ' + what)); }, ms);
      }),
    ]).finally(function () { clearTimeout(t); });
  }

  // Inbox records Event.MESSAGE deliveries and wakes waiters.
  const inbox = [];
  const waiters = new Set();
  function deliver(m, conv) {
    inbox.push({ m: m, conv: conv });
    waiters.forEach(function (w) { w(); });
  }
  function waitMessage(pred, ms, what) {
    const find = function () { return inbox.find(function (e) { return pred(e.m, e.conv); }); };
    const hit = find();
    if (hit) return Promise.resolve(hit);
    let w;
    return withTimeout(new Promise(function (resolve) {
      w = function () { const h = find(); if (h) resolve(h); };
      waiters.add(w);
    }), ms, what + ' (inbox: ' + JSON.stringify(inbox.map(function (e) { return [e.m.id, e.m.type]; })) + ')')
      .finally(function () { waiters.delete(w); });
  }

  function describeConv(c) {
    return { id: c.id, name: c.name, members: c.members.slice().sort(), transient: c.transient };
  }

  function hex(buf) {
    return Array.from(new Uint8Array(buf), function (b) { return b.toString(16).padStart(2, '0'); }).join('');
  }

  // A console for examples: records log/error lines and forwards them.
  function recordingConsole() {
    const entries = [];
    const ws = new Set();
    const c = {};
    ['log', 'info', 'warn', 'error'].forEach(function (level) {
      c[level] = function () {
        const args = Array.prototype.slice.call(arguments);
        const text = args.map(function (a) {
          if (typeof a === 'string') return a;
          if (a instanceof Error) return a.name + ': ' + a.message;
          try { return JSON.stringify(a); } catch (e) { return String(a); }
        }).join(' ');
        entries.push({ level: level, text: text });
        window.console[level].apply(window.console, args);
        ws.forEach(function (w) { w(); });
      };
    });
    c.waitFor = function (line, ms) {
      const check = function () {
        const err = entries.find(function (e) { return e.level === 'error'; });
        if (err) throw new Error('example reported an error: ' + err.text);
        return entries.some(function (e) { return e.level === 'log' && e.text.indexOf(line) >= 0; });
      };
      if (check()) return Promise.resolve();
      let w;
      return withTimeout(new Promise(function (resolve, reject) {
        w = function () { try { if (check()) resolve(); } catch (e) { reject(e); } };
        ws.add(w);
      }), ms, JSON.stringify(line) + ' from the example (seen: ' + JSON.stringify(entries) + ')')
        .finally(function () { ws.delete(w); });
    };
    return c;
  }

  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  const state = { realtime: null, client: null, conversations: {}, sent: [] };

  window.bt = {
    // init configures both SDKs against the node: the only change an app makes.
    init: function (opts) {
      AV.init({ appId: opts.appId, appKey: opts.appKey, serverURL: opts.server });
      state.realtime = new AV.Realtime({
        appId: opts.appId,
        appKey: opts.appKey,
        server: opts.server,
        RTMServers: opts.RTMServers,
        plugins: [AV.TypedMessagesPlugin],
      });
      return {
        realtime: typeof AV.Realtime, image: typeof AV.ImageMessage, file: typeof AV.File,
        jquery: typeof $ === 'function' && $.fn && $.fn.jquery,
      };
    },

    login: async function (id) {
      state.client = await withTimeout(state.realtime.createIMClient(id), 15000, 'createIMClient(' + id + ')');
      state.client.on(AV.Event.MESSAGE, deliver);
      return state.client.id;
    },

    createConversation: async function (members, name) {
      const c = await withTimeout(state.client.createConversation({ members: members, name: name, unique: true }),
        15000, 'createConversation');
      state.conversations[c.id] = c;
      return describeConv(c);
    },

    sendText: async function (cid, text) {
      const m = await withTimeout(state.conversations[cid].send(new AV.TextMessage(text)), 15000, 'send');
      return { id: m.id, timestamp: +m.timestamp, from: m.from, text: m.getText() };
    },

    // waitText waits for a TextMessage with this id on Event.MESSAGE.
    waitText: async function (id, ms) {
      const e = await waitMessage(function (m) { return m.id === id; }, ms, 'message ' + id);
      state.conversations[e.conv.id] = e.conv;
      return {
        id: e.m.id, from: e.m.from, cid: e.m.cid, type: e.m.type,
        isText: e.m instanceof AV.TextMessage, text: e.m.getText(), conv: describeConv(e.conv),
      };
    },

    // runExample runs a seed-guide example verbatim as the body of an async
    // function whose parameters are the globals it assumes; `conversation` is
    // wrapped only to learn which message send() returned.
    runExample: async function (line, cid, ms) {
      const src = await (await fetch('/examples/L' + String(line).padStart(4, '0') + '.js')).text();
      const con = recordingConsole();
      const conv = state.conversations[cid];
      const sends = [];
      const tracked = new Proxy(conv, {
        get: function (target, prop) {
          const v = Reflect.get(target, prop, target);
          if (prop !== 'send' || typeof v !== 'function') return v;
          return function () {
            const p = v.apply(target, arguments);
            sends.push(p);
            return p;
          };
        },
      });
      const fn = new AsyncFunction('$', 'AV', 'ImageMessage', 'conversation', 'console', src);
      await fn($, AV, AV.ImageMessage, tracked, con);
      await con.waitFor('发送成功', ms);
      if (sends.length !== 1) throw new Error('example made ' + sends.length + ' send() calls');
      const m = await sends[0];
      return { id: m.id, type: m.type };
    },

    // selectedFile describes what the file input holds.
    selectedFile: async function () {
      const f = $('#photoFileUpload')[0].files[0];
      return f ? { name: f.name, size: f.size, type: f.type, hex: hex(await f.arrayBuffer()) } : null;
    },

    // waitImage waits for an ImageMessage with this id and downloads its file
    // from the URL the message carries (a cross-origin GET from the page).
    waitImage: async function (id, ms) {
      const e = await waitMessage(function (m) { return m.id === id; }, ms, 'image message ' + id);
      const file = e.m.getFile();
      const res = await fetch(file.url());
      return {
        id: e.m.id, type: e.m.type, isImage: e.m instanceof AV.ImageMessage,
        text: e.m.getText(), attributes: e.m.getAttributes(),
        file: { id: file.id, name: file.name(), url: file.url(), size: file.metaData('size') },
        download: { status: res.status, type: res.headers.get('content-type'), hex: hex(await res.arrayBuffer()) },
      };
    },

    // getConversation queries a conversation by id (guide: tom.getConversation('CONVERSATION_ID')).
    getConversation: async function (cid) {
      const c = await withTimeout(state.client.getConversation(cid, true), 15000, 'getConversation');
      return c ? describeConv(c) : null;
    },

    // queryConversation uses the query language on objectId.
    queryConversation: async function (cid) {
      const q = state.client.getQuery().equalTo('objectId', cid);
      const list = await withTimeout(q.find(), 15000, 'conversation query');
      return list.map(describeConv);
    },

    // fetchFile looks the uploaded file up by id through the storage SDK.
    fetchFile: async function (fileId) {
      const f = await withTimeout(AV.File.createWithoutData(fileId).fetch(), 15000, 'AV.File fetch');
      return { id: f.id, name: f.name(), url: f.url(), size: f.metaData('size') };
    },

    close: async function () {
      if (state.realtime) await withTimeout(state.realtime.close(), 5000, 'realtime.close()');
    },
  };
}());
