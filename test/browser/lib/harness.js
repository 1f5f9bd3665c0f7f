'use strict';
// Browser test harness: starts imnode (development app, fresh data dir), a
// static HTTP server for the test page and headless Debian Chromium driven by
// playwright-core. Everything listens on 127.0.0.1 port 0. The page's origin
// (the static server) differs from the node's, so every REST call the SDKs
// make from the page is a cross-origin request that needs the node's CORS
// answers, as in a real web app.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const HERE = path.resolve(__dirname, '..');
const IMNODE = process.env.IMNODE_BIN || path.join(ROOT, 'bin', 'imnode');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const DEV_APP = { appId: 'imcluster-dev', appKey: 'imcluster-dev-key', masterKey: 'imcluster-dev-master' };

// What the static server serves: the page, its script, the official browser
// builds from node_modules (pinned in package.json) and the seed guide's
// examples as the compatibility suite keeps them (byte for byte, checked
// against the guide by test/compat/tests/seed.test.js).
const mod = (p) => path.join(HERE, 'node_modules', p);
const FILES = {
  '/': [path.join(HERE, 'page', 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [path.join(HERE, 'page', 'app.js'), 'text/javascript; charset=utf-8'],
  '/vendor/jquery.js': [mod('jquery/dist/jquery.min.js'), 'text/javascript; charset=utf-8'],
  '/vendor/av.js': [mod('leancloud-storage/dist/av-min.js'), 'text/javascript; charset=utf-8'],
  '/vendor/realtime.js': [mod('leancloud-realtime/dist/im-browser.min.js'), 'text/javascript; charset=utf-8'],
  '/vendor/typed-messages.js': [mod('leancloud-realtime-plugin-typed-messages/dist/typed-messages.min.js'), 'text/javascript; charset=utf-8'],
};
const EXAMPLES = path.join(ROOT, 'test', 'compat', 'examples');

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// startImnode starts the node and resolves once it wrote its addr file. It
// watches the file's directory (no polling loop with sleeps) and fails fast if
// the process exits.
async function startImnode(dir) {
  if (!fs.existsSync(IMNODE)) throw new Error(`${IMNODE} not found: run "make test-browser" (it builds bin/imnode)`);
  const addrFile = path.join(dir, 'addr.json');
  const log = [];
  // Every listener on port 0 (gossip and peer transport included): the
  // test never collides with a `make run` cluster or another test.
  const proc = spawn(IMNODE, [
    '--data-dir', path.join(dir, 'data'),
    '--client-addr', '127.0.0.1:0',
    '--admin-addr', '127.0.0.1:0',
    '--insecure',
    '--peer-addr', '127.0.0.1:0',
    '--transport-addr', '127.0.0.1:0',
    '--cluster-profile', 'local',
    '--bootstrap',
    '--dev-app',
    '--addr-file', addrFile,
    '--log-level', process.env.IMNODE_LOG_LEVEL || 'warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (b) => {
    log.push(b.toString());
    if (process.env.IMNODE_LOG) process.stderr.write(`[imnode] ${b}`);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));

  const read = () => {
    try {
      const a = JSON.parse(fs.readFileSync(addrFile, 'utf8'));
      return a.client ? a : null;
    } catch {
      return null; // not written yet, or being written
    }
  };
  let watcher;
  const ready = new Promise((resolve, reject) => {
    watcher = fs.watch(dir, () => {
      const a = read();
      if (a) resolve(a);
    });
    const a = read();
    if (a) resolve(a);
    exited.then((e) => reject(new Error(`imnode exited early (${JSON.stringify(e)}): ${log.join('').slice(-2000)}`)));
  });
  try {
    const addrs = await withTimeout(ready, 20000, 'imnode addr file');
    return { proc, exited, log, client: addrs.client, admin: addrs.admin };
  } catch (e) {
    proc.kill('SIGKILL'); // a node that failed to start must not outlive the test
    throw e;
  } finally {
    watcher.close();
  }
}

// startStatic serves FILES and GET /examples/LNNNN.js on 127.0.0.1:0.
function startStatic() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let entry = FILES[url.pathname];
    const ex = /^\/examples\/(L\d{4}\.js)$/.exec(url.pathname);
    if (ex) entry = [path.join(EXAMPLES, ex[1]), 'text/plain; charset=utf-8'];
    if (req.method !== 'GET' || !entry) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    fs.readFile(entry[0], (err, data) => {
      if (err) {
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(String(err));
        return;
      }
      res.writeHead(200, { 'Content-Type': entry[1], 'Cache-Control': 'no-store' }).end(data);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// Flags for Debian's Chromium on this machine: headless, no sandbox (root),
// no GPU, and no background traffic to Google (the network is closed).
// playwright-core gives every launch a fresh, empty user data dir.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

class Harness {
  constructor() {
    this.dir = null;
    this.node = null;
    this.static = null;
    this.browser = null;
    this.pages = [];
  }

  async start() {
    const { chromium } = require('playwright-core');
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imcluster-browser-'));
    // Node, page server and browser start in parallel: the budget is tight
    // on two shared cores.
    // Each part is recorded as soon as it is up, so stop() tears down
    // whatever started when another part failed (a node left running kept
    // `node --test` alive after a failure).
    const results = await Promise.allSettled([
      startImnode(this.dir).then((n) => { this.node = n; }),
      startStatic().then((s) => { this.static = s; }),
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30000 })
        .then((b) => { this.browser = b; }),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      await this.stop();
      throw failed.reason;
    }
    const server = this.static;
    const node = this.node;
    this.pageOrigin = `http://127.0.0.1:${server.address().port}`;
    this.nodeOrigin = `http://${node.client}`;
  }

  // options are the SDK options an app uses to switch to imcluster.
  options(app = DEV_APP) {
    return { appId: app.appId, appKey: app.appKey, server: this.nodeOrigin, RTMServers: [`ws://${this.node.client}`] };
  }

  // open loads the test page in a browser context of its own (one device:
  // the SDK allows one Realtime per appId per page) and initialises the SDKs.
  async open(label) {
    const context = await this.browser.newContext();
    const page = await context.newPage();
    const events = [];
    page.on('console', (m) => {
      events.push(`[${label} console.${m.type()}] ${m.text()}`);
      if (process.env.BROWSER_LOG) process.stderr.write(`[${label} console.${m.type()}] ${m.text()}\n`);
    });
    page.on('pageerror', (e) => events.push(`[${label} pageerror] ${e.stack || e}`));
    page.on('requestfailed', (r) => events.push(`[${label} requestfailed] ${r.method()} ${r.url()}: ${r.failure() && r.failure().errorText}`));
    page.setDefaultTimeout(20000);
    await page.goto(`${this.pageOrigin}/`, { waitUntil: 'load' });
    await page.evaluate((opts) => window.bt.init(opts), this.options());
    const entry = { label, context, page, events };
    this.pages.push(entry);
    return entry;
  }

  // diagnostics returns what the pages logged, for failure messages.
  diagnostics() {
    return [...this.pages.flatMap((p) => p.events), ...(this.node ? [`[imnode log] ${this.node.log.join('').slice(-3000)}`] : [])].join('\n');
  }

  async stop() {
    for (const p of this.pages.splice(0)) {
      await p.page.evaluate(() => window.bt.close()).catch(() => {});
      await p.context.close().catch(() => {});
    }
    if (this.browser) await this.browser.close().catch(() => {});
    this.browser = null;
    if (this.static) await new Promise((r) => this.static.close(r));
    this.static = null;
    if (this.node) {
      const node = this.node;
      this.node = null;
      node.proc.kill('SIGTERM');
      await withTimeout(node.exited, 20000, 'imnode to exit').catch((e) => {
        node.proc.kill('SIGKILL');
        throw e;
      });
    }
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Harness, DEV_APP, withTimeout };
