'use strict';
// Waiting on SDK events with deadlines.

const { withTimeout } = require('./harness');

// Recorder keeps every occurrence of the given events of one emitter, in
// arrival order, as {event, args}.
class Recorder {
  constructor(emitter, events, label = '') {
    this.label = label;
    this.log = [];
    this.waiters = [];
    for (const event of events) {
      emitter.on(event, (...args) => {
        this.log.push({ event, args });
        for (const w of this.waiters.slice()) w();
      });
    }
  }

  names() {
    return this.log.map((e) => e.event);
  }

  // waitFor resolves with the first recorded occurrence (index >= from) that
  // matches event and pred.
  waitFor(event, pred = () => true, ms = 10000, from = 0) {
    const find = () => this.log.slice(from).find((e) => e.event === event && pred(...e.args));
    const hit = find();
    if (hit) return Promise.resolve(hit.args);
    let w;
    return withTimeout(new Promise((resolve) => {
      w = () => {
        const h = find();
        if (h) resolve(h.args);
      };
      this.waiters.push(w);
    }), ms, `${this.label} event ${event} (got: ${JSON.stringify(this.names())})`)
      .finally(() => { this.waiters = this.waiters.filter((x) => x !== w); });
  }

  // waitCount resolves once `event` was recorded n times.
  waitCount(event, n, ms = 10000) {
    const count = () => this.log.filter((e) => e.event === event).length;
    if (count() >= n) return Promise.resolve();
    let w;
    return withTimeout(new Promise((resolve) => {
      w = () => { if (count() >= n) resolve(); };
      this.waiters.push(w);
    }), ms, `${n}x ${this.label} event ${event} (got: ${JSON.stringify(this.names())})`)
      .finally(() => { this.waiters = this.waiters.filter((x) => x !== w); });
  }
}

// once waits for one occurrence of event on emitter matching pred.
function once(emitter, event, pred = () => true, ms = 10000) {
  let handler;
  return withTimeout(new Promise((resolve) => {
    handler = (...args) => {
      if (pred(...args)) resolve(args);
    };
    emitter.on(event, handler);
  }), ms, `event ${event}`).finally(() => emitter.off(event, handler));
}

// rejectsWith asserts p rejects with an Error whose message (the server's
// symbolic reason, [JS] §3.15.1) and code match.
async function rejection(p, ms = 15000) {
  try {
    await withTimeout(p, ms, 'a rejection');
  } catch (e) {
    return e;
  }
  throw new Error('expected the promise to reject, it resolved');
}

module.exports = { Recorder, once, rejection };
