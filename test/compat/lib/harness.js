'use strict';
// Test harness: starts imnode processes, hands out isolated apps, builds
// Realtime options per node, evaluates the seed guide's examples and waits on
// events and console output with deadlines.
//
// Node addresses: by default the harness starts IMCLUSTER_NODES (default 1)
// imnode processes as one cluster: node 0 first, the others --join the gossip
// addresses of the nodes already running, all on 127.0.0.1, each with
// IMCLUSTER_SHARDS shards (default 32), IMCLUSTER_REPLICATION_FACTOR (default
// 3) and IMCLUSTER_WRITE_QUORUM (default 2); start() returns once every node is
// ready (/readyz), sees all members alive and active and no under-replicated
// shard. With IMCLUSTER_CLIENT_ADDRS='["127.0.0.1:p1", ...]' it uses an
// already running cluster instead (restart() is then unavailable). Clients
// are pinned to nodes by index: realtime(i) connects to nodes[i % nodes.length]
// only (RTMServers lists that one address), so the same tests run against one
// node or against a three-node cluster with Tom, Jerry and Mary on different
// nodes.
//
// restart(i) stops node i and starts it again on the same client, gossip and
// transport ports and data dir (a restarted member must come back at the
// address its peers know), joining the other nodes.
//
// IMNODE_LOG=1 streams every node's output to stderr; IMNODE_LOG_DIR=DIR
// appends it to DIR/<test file>.compat-<i>.log (kept after the run).

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

// clusterConfig is the cluster configuration of harness-started nodes. A
// single node gets the same flags (its gossip and transport listeners are
// bound to 127.0.0.1 like everything else; R and W are effectively 1).
function clusterConfig() {
  const int = (name, def) => {
    const v = Number(process.env[name] || def);
    assert.ok(Number.isInteger(v) && v > 0, `${name} must be a positive integer`);
    return v;
  };
  return {
    shards: int('IMCLUSTER_SHARDS', 32),
    replicationFactor: int('IMCLUSTER_REPLICATION_FACTOR', 3),
    writeQuorum: int('IMCLUSTER_WRITE_QUORUM', 2),
  };
}

async function httpGet(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = await res.text();
  return { status: res.status, body };
}

class Node {
  constructor(index, dir, appsFile, cluster) {
    this.index = index;
    this.id = `compat-${index}`;
    this.dir = dir;
    this.appsFile = appsFile;
    this.cluster = cluster;
    this.client = null; // "127.0.0.1:PORT"
    this.admin = null;
    this.gossip = null;
    this.transport = null;
    this.proc = null;
    this.log = [];
    this.logFile = null;
    if (process.env.IMNODE_LOG_DIR) {
      fs.mkdirSync(process.env.IMNODE_LOG_DIR, { recursive: true });
      const test = path.basename(process.argv[1] || 'compat', '.js');
      this.logFile = path.join(process.env.IMNODE_LOG_DIR, `${test}.${this.id}.log`);
    }
  }

  // start starts the node (again, on the ports of its previous run, if any)
  // and waits until it is ready. join lists the gossip addresses of running
  // nodes (cluster mode; empty for the first node).
  async start(join = []) {
    const addrFile = path.join(this.dir, 'addr.json');
    fs.rmSync(addrFile, { force: true });
    const args = [
      '--node-id', this.id,
      '--data-dir', path.join(this.dir, 'data'),
      '--client-addr', this.client || '127.0.0.1:0',
      '--admin-addr', '127.0.0.1:0',
      '--insecure', '--dev-app', '--apps-file', this.appsFile,
      '--addr-file', addrFile,
      '--log-level', process.env.IMNODE_LOG_LEVEL || 'warn',
    ];
    args.push(
      '--peer-addr', this.gossip || '127.0.0.1:0',
      '--transport-addr', this.transport || '127.0.0.1:0',
      // No --advertise-host: it defaults to the bind host, 127.0.0.1.
      // Failure detection tuned for nodes sharing one machine.
      '--cluster-profile', 'local',
      '--shards', String(this.cluster.shards),
      '--replication-factor', String(this.cluster.replicationFactor),
      '--write-quorum', String(this.cluster.writeQuorum),
    );
    // The first node forms the cluster (--bootstrap is ignored once its
    // data directory belongs to one); the others join it.
    if (join.length) args.push('--join', join.join(','));
    else args.push('--bootstrap');
    if (this.logFile) fs.appendFileSync(this.logFile, `\n=== ${new Date().toISOString()} imnode ${args.join(' ')}\n`);
    const proc = spawn(IMNODE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    const keep = (b) => {
      this.log.push(b.toString());
      if (this.log.length > 200) this.log.shift();
      if (process.env.IMNODE_LOG) process.stderr.write(`[imnode ${this.index}] ${b}`);
      if (this.logFile) fs.appendFileSync(this.logFile, b);
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    let exitedEarly = null;
    this.exited.then((e) => { exitedEarly = e; });
    const checkAlive = () => {
      if (exitedEarly) throw new Error(`imnode ${this.index} exited (${JSON.stringify(exitedEarly)}): ${this.tail()}`);
    };
    // A restart may find the port still in TIME_WAIT/held: retry binding.
    const addrs = await poll(`imnode ${this.index} addr file`, () => {
      checkAlive();
      try {
        const a = JSON.parse(fs.readFileSync(addrFile, 'utf8'));
        return a.client ? a : null;
      } catch {
        return null;
      }
    }, 20000);
    this.client = addrs.client;
    this.admin = addrs.admin;
    assert.ok(addrs.gossip && addrs.transport, `imnode ${this.index} addr file lacks gossip/transport: ${JSON.stringify(addrs)}`);
    this.gossip = addrs.gossip;
    this.transport = addrs.transport;
    // Ready: joined, caught up and serving.
    await poll(`imnode ${this.index} /readyz`, async () => {
      checkAlive();
      try {
        return (await httpGet(`http://${this.admin}/readyz`)).status === 200;
      } catch {
        return false;
      }
    }, 60000, 100);
  }

  // clusterView is GET /admin/v1/cluster on this node.
  async clusterView() {
    const { status, body } = await httpGet(`http://${this.admin}/admin/v1/cluster`);
    assert.equal(status, 200, `GET /admin/v1/cluster on imnode ${this.index}: ${status} ${body}`);
    return JSON.parse(body);
  }

  tail(n = 3000) {
    return this.log.join('').slice(-n);
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
  // opts.hooks(app), if set, returns the server-hook settings of each app
  // (the apps file's "hooks", docs/hooks.md).
  constructor(opts = {}) {
    this.opts = opts;
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
    const hooks = this.opts.hooks;
    fs.writeFileSync(appsFile, JSON.stringify({ apps: this.apps.map((a) => (hooks ? { ...a, hooks: hooks(a) } : a)) }));
    const n = Number(process.env.IMCLUSTER_NODES || 1);
    assert.ok(Number.isInteger(n) && n >= 1, 'IMCLUSTER_NODES must be a positive integer');
    const cluster = clusterConfig();
    for (let i = 0; i < n; i++) {
      const dir = path.join(this.dir, `node-${i}`);
      fs.mkdirSync(dir);
      const node = new Node(i, dir, appsFile, cluster);
      this.nodes.push(node);
      await node.start(this.nodes.filter((o) => o !== node && o.proc).map((o) => o.gossip));
    }
    await this.waitHealthy();
  }

  // waitHealthy waits until every running node sees every node alive and
  // active and no under-replicated shard.
  async waitHealthy(timeoutMs = 60000) {
    if (this.external) return;
    let last = '';
    try {
      await poll('a healthy cluster', async () => {
        for (const node of this.nodes) {
          if (!node.proc) return false;
          const view = await node.clusterView();
          last = `imnode ${node.index} sees ${JSON.stringify(view)}`;
          for (const other of this.nodes) {
            const m = (view.members || []).find((x) => x.id === other.id);
            if (!m || !m.alive || m.state !== 'active') return false;
          }
          if ((view.underReplicated || []).length > 0) return false;
        }
        return true;
      }, timeoutMs, 200);
    } catch (err) {
      err.message += `; last view: ${last}`;
      throw err;
    }
  }

  async stop() {
    for (const rt of this.realtimes.splice(0)) {
      await closeRealtime(rt);
    }
    if (!this.external) await Promise.all(this.nodes.map((n) => n.stop()));
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

  // restart stops node i and starts it again on the same ports and data dir;
  // in a cluster it rejoins through the other nodes and restart returns once
  // the cluster is healthy again (the node caught up).
  async restart(i, { signal = 'SIGTERM', beforeStart } = {}) {
    assert.ok(!this.external, 'restart needs harness-started nodes');
    const n = this.node(i);
    await n.stop(signal);
    if (beforeStart) await beforeStart();
    await n.start(this.nodes.filter((o) => o !== n && o.proc).map((o) => o.gossip));
    await this.waitHealthy();
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
