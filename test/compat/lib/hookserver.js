'use strict';
// A real HTTP hook server on 127.0.0.1:0 for the server hooks
// (docs/hooks.md): it checks every request's signature, records it and
// answers {"result": answer(hook, params, appId)}.

const http = require('node:http');
const crypto = require('node:crypto');
const { withTimeout } = require('./harness');

class HookServer {
  constructor(secret, answer = () => ({})) {
    this.secret = secret;
    this.answer = answer;
    this.calls = [];
    this.badSignatures = 0;
    this.waiters = [];
  }

  async start() {
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', async () => {
        const body = Buffer.concat(chunks);
        const ts = req.headers['x-lc-hook-timestamp'] || '';
        const want = 'v1=' + crypto.createHmac('sha256', this.secret).update(`${ts}.`).update(body).digest('hex');
        const got = req.headers['x-lc-hook-signature'] || '';
        if (got.length !== want.length || !crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want)) ||
            Math.abs(Date.now() - Number(ts)) > 60000 || req.headers['x-lc-hook-key'] !== this.secret) {
          this.badSignatures++;
          res.writeHead(401).end('{"code":401,"error":"Unauthorized."}');
          return;
        }
        const hook = req.url.startsWith('/1.1/functions/') ? req.url.slice('/1.1/functions/'.length) : req.url;
        const params = JSON.parse(body.toString());
        const appId = req.headers['x-lc-id'];
        this.calls.push({ hook, params, appId });
        for (const w of this.waiters.slice()) w();
        const result = await this.answer(hook, params, appId);
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ result: result === undefined ? null : result }));
      });
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
  }

  stop() {
    return new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve()));
  }

  // waitCall resolves with the first recorded call of hook matching pred.
  waitCall(hook, pred = () => true, ms = 10000) {
    const find = () => this.calls.find((c) => c.hook === hook && pred(c.params, c));
    const hit = find();
    if (hit) return Promise.resolve(hit);
    let w;
    return withTimeout(new Promise((resolve) => {
      w = () => {
        const h = find();
        if (h) resolve(h);
      };
      this.waiters.push(w);
    }), ms, `hook ${hook} (got: ${JSON.stringify(this.calls.map((c) => c.hook))})`)
      .finally(() => { this.waiters = this.waiters.filter((x) => x !== w); });
  }
}

module.exports = { HookServer };
