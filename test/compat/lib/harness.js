'use strict';
// Test harness: starts imnode processes, hands out isolated apps, builds
// Realtime options per node, evaluates the seed guide's examples and waits on
// events and console output with deadlines.
//
// Node addresses: by default the harness starts IMCLUSTER_NODES (default 1)
// independent imnode processes. With IMCLUSTER_CLIENT_ADDRS='["127.0.0.1:p1",
// ...]' it uses an already running cluster instead (restart() is then
// unavailable). Clients are pinned to nodes by index: realtime(i) connects to
// nodes[i % nodes.length], so the same tests run against one node or against a
// three-node cluster with Tom, Jerry and Mary on different nodes.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert/strict');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const IMNODE = process.env.IMNODE_BIN || path.join(ROOT, 'bin', 'imnode');
const APP_POOL = 64;

const sdk = {
  realtime: require('leancloud-realtime'),
  AV: require('leancloud-storage'),
  typed: require('leancloud-realtime-plugin-typed-messages'),
};

// loadDevice loads a private copy of leancloud-realtime and the
// typed-messages plugin. The SDK refuses a second Realtime for the same appId
// in one JavaScript runtime ("App [...] is already initialized"), because a
// browser tab or app process is one device. Each simulated device (Tom's
// phone, Jerry's laptop) therefore gets its own module instances, sharing
// leancloud-storage (AV) as the plugin's peer dependency.
function loadDevice() {
  const isDeviceModule = (k) => /[\\/]node_modules[\\/]leancloud-realtime(-plugin-typed-messages)?[\\/]/.test(k);
  const saved = {};
  for (const k of Object.keys(require.cache)) {
    if (isDeviceModule(k)) {
      saved[k] = require.cache[k];
      delete require.cache[k];
    }
  }
  const realtime = require('leancloud-realtime');
  const typed = require('leancloud-realtime-plugin-typed-messages');
  for (const k of Object.keys(require.cache)) {
    if (isDeviceModule(k)) delete require.cache[k];
  }
  Object.assign(require.cache, saved);
  const deviceRequire = (name) => {
    if (name === 'leancloud-realtime') return realtime;
    if (name === 'leancloud-realtime-plugin-typed-messages') return typed;
    return require(name);
  };
  return { realtime, typed, AV: sdk.AV, require: deviceRequire };
}

function sleepMs(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// poll calls fn until it returns a truthy value or the deadline passes.
async function poll(what, fn, timeoutMs = 10000, everyMs = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleepMs(everyMs);
  }
}

// withTimeout rejects if p does not settle in time.
function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

class Node {
  constructor(index, dir, appsFile) {
    this.index = index;
    this.dir = dir;
    this.appsFile = appsFile;
    this.client = null; // "127.0.0.1:PORT"
    this.admin = null;
    this.proc = null;
    this.log = [];
  }

  async start() {
    const addrFile = path.join(this.dir, 'addr.json');
    fs.rmSync(addrFile, { force: true });
    const clientAddr = this.client || '127.0.0.1:0';
    const args = [
      '--node-id', `compat-${this.index}`,
      '--data-dir', path.join(this.dir, 'data'),
      '--client-addr', clientAddr,
      '--admin-addr', '127.0.0.1:0',
      '--dev-app', '--apps-file', this.appsFile,
      '--addr-file', addrFile,
      '--log-level', process.env.IMNODE_LOG_LEVEL || 'warn',
    ];
    const proc = spawn(IMNODE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    const keep = (b) => {
      this.log.push(b.toString());
      if (this.log.length > 200) this.log.shift();
      if (process.env.IMNODE_LOG) process.stderr.write(`[imnode ${this.index}] ${b}`);
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    let exitedEarly = null;
    this.exited.then((e) => { exitedEarly = e; });
    // A restart may find the port still in TIME_WAIT/held: retry binding.
    const addrs = await poll(`imnode ${this.index} addr file`, () => {
      if (exitedEarly) throw new Error(`imnode ${this.index} exited (${JSON.stringify(exitedEarly)}): ${this.log.join('').slice(-2000)}`);
      try {
        const a = JSON.parse(fs.readFileSync(addrFile, 'utf8'));
        return a.client ? a : null;
      } catch {
        return null;
      }
    }, 20000);
    this.client = addrs.client;
    this.admin = addrs.admin;
  }

  async stop(signal = 'SIGTERM') {
    if (!this.proc) return;
    const p = this.proc;
    this.proc = null;
    p.kill(signal);
    await withTimeout(this.exited, 40000, `imnode ${this.index} to exit`);
  }
}

class Harness {
  constructor() {
    this.nodes = [];
    this.external = false;
    this.apps = [];
    this.nextApp = 0;
    this.realtimes = [];
    this.dir = null;
  }

  async start() {
    for (let i = 0; i < APP_POOL; i++) {
      const id = `compat-${process.pid}-${i}`;
      this.apps.push({ appId: id, appKey: `${id}-key`, masterKey: `${id}-master` });
    }
    if (process.env.IMCLUSTER_CLIENT_ADDRS) {
      this.external = true;
      const list = JSON.parse(process.env.IMCLUSTER_CLIENT_ADDRS);
      this.nodes = list.map((client, i) => Object.assign(new Node(i), { client }));
      // An external cluster serves only the apps it was configured with.
      this.apps = [{ appId: 'imcluster-dev', appKey: 'imcluster-dev-key', masterKey: 'imcluster-dev-master' }];
      return;
    }
    assert.ok(fs.existsSync(IMNODE), `${IMNODE} not found: run "make test-compat" (it builds bin/imnode)`);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imcluster-compat-'));
    const appsFile = path.join(this.dir, 'apps.json');
    fs.writeFileSync(appsFile, JSON.stringify({ apps: this.apps }));
    const n = Number(process.env.IMCLUSTER_NODES || 1);
    for (let i = 0; i < n; i++) {
      const dir = path.join(this.dir, `node-${i}`);
      fs.mkdirSync(dir);
      const node = new Node(i, dir, appsFile);
      await node.start();
      this.nodes.push(node);
    }
  }

  async stop() {
    for (const rt of this.realtimes.splice(0)) {
      await closeRealtime(rt);
    }
    for (const n of this.nodes) {
      if (!this.external) await n.stop();
    }
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // app returns a fresh app so tests do not see each other's conversations.
  // Against an external cluster every test shares the development app.
  app() {
    if (this.external) return this.apps[0];
    assert.ok(this.nextApp < this.apps.length, 'app pool exhausted; raise APP_POOL');
    return this.apps[this.nextApp++];
  }

  node(i) {
    return this.nodes[i % this.nodes.length];
  }

  // options builds the Realtime options for a client pinned to node i: the
  // only thing an app changes to switch to imcluster.
  options(app, i = 0, extra = {}) {
    const n = this.node(i);
    return {
      appId: app.appId,
      appKey: app.appKey,
      server: `http://${n.client}`,
      RTMServers: `ws://${n.client}`,
      ...extra,
    };
  }

  // realtime creates a Realtime pinned to node i with the typed-messages
  // plugin, on a device of its own (see loadDevice): rt.sdk holds that
  // device's modules, rt.sdk.require is what its examples require with.
  realtime(app, i = 0, extra = {}) {
    const dev = loadDevice();
    const rt = new dev.realtime.Realtime(this.options(app, i, { plugins: [dev.typed.TypedMessagesPlugin], ...extra }));
    rt.sdk = dev;
    this.realtimes.push(rt);
    return rt;
  }

  // initAV points leancloud-storage at node i for app.
  initAV(app, i = 0) {
    const { AV } = sdk;
    AV._config.applicationId = undefined; // silence the re-init warning between tests
    AV.init({ appId: app.appId, appKey: app.appKey, serverURL: `http://${this.node(i).client}` });
    return AV;
  }

  // restart stops node i and starts it again on the same port and data dir.
  async restart(i, { signal = 'SIGTERM', beforeStart } = {}) {
    assert.ok(!this.external, 'restart needs harness-started nodes');
    const n = this.node(i);
    await n.stop(signal);
    if (beforeStart) await beforeStart();
    await n.start();
  }
}

// closeRealtime closes rt's connection. leancloud-realtime 5 has no public
// Realtime.close() (an app closes its IMClients and the SDK drops the socket
// when none is left); a Realtime left open keeps rescheduling reconnects once
// the node is gone, which keeps the test process alive. _close() is the
// SDK's own teardown of the connection.
async function closeRealtime(rt) {
  rt._close();
}

module.exports = { Harness, sdk, loadDevice, poll, withTimeout, sleepMs, ROOT };
