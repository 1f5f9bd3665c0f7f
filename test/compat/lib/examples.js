'use strict';
// Evaluating the seed guide's JavaScript examples.
//
// examples/LNNNN.js holds the example that starts at line NNNN of the guide,
// byte for byte (tests/seed.test.js checks that against the guide). An example
// is run as the body of an async function whose parameters are the variables
// it assumes (realtime, tom, conversation, query, $, ...). Its own console
// output is the observable result in most examples ("发送成功", "添加成功"), so
// the harness hands it a recording console; tests wait for those lines. The
// promises returned by calls on the provided objects are recorded too
// (track()), so a test can await what an example started without changing it.
//
// Six examples do not compile as printed in the guide. REPAIRS lists the
// smallest textual fix for each; tests/seed.test.js asserts that the printed
// text really fails to compile, so a fixed guide makes the repair fail loudly.

const fs = require('node:fs');
const path = require('node:path');
const { EventEmitter } = require('node:events');
const { withTimeout } = require('./harness');

const DIR = path.join(__dirname, '..', 'examples');

const REPAIRS = {
  // API reference: a method signature, not a statement. Dropping `async`
  // turns it into the call it documents (createConversation is bound to tom).
  248: [['async createConversation({', 'createConversation({']],
  // The handler's closing `);` is missing.
  1595: [['      break;\n   }\n}\n', '      break;\n   }\n});\n']],
  // `).catch` lacks the `}` that closes the then-callback.
  2658: [["conversation.members);\n).catch", "conversation.members);\n}).catch"]],
  // `}.catch(` lacks the `)` that closes then(...).
  3605: [['}.catch(function(error) {', '}).catch(function(error) {']],
  3660: [['}.catch(function(error) {', '}).catch(function(error) {']],
  3724: [['}.catch(function(error) {', '}).catch(function(error) {']],
};

function file(line) {
  return path.join(DIR, `L${String(line).padStart(4, '0')}.js`);
}

// printed returns the example exactly as the guide prints it.
function printed(line) {
  return fs.readFileSync(file(line), 'utf8');
}

// source returns the example as run: printed text plus its REPAIRS, if any.
function source(line) {
  let src = printed(line);
  for (const [from, to] of REPAIRS[line] || []) {
    const at = src.indexOf(from);
    if (at < 0 || src.indexOf(from, at + 1) >= 0) {
      throw new Error(`example ${line}: repair text ${JSON.stringify(from)} must occur exactly once`);
    }
    src = src.slice(0, at) + to + src.slice(at + from.length);
  }
  return src;
}

const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;

function compiles(src, names = []) {
  try {
    // eslint-disable-next-line no-new
    new AsyncFunction(...names, src);
    return true;
  } catch (e) {
    if (e instanceof SyntaxError) return false;
    throw e;
  }
}

// RecordingConsole records log/warn/error calls and lets tests wait for them.
class RecordingConsole extends EventEmitter {
  constructor(label) {
    super();
    this.label = label;
    this.entries = [];
    for (const level of ['log', 'info', 'warn', 'error']) {
      this[level] = (...args) => {
        const entry = { level, args, text: args.map(fmt).join(' ') };
        this.entries.push(entry);
        if (process.env.COMPAT_VERBOSE) process.stderr.write(`[${label} ${level}] ${entry.text}\n`);
        this.emit('entry', entry);
      };
    }
  }

  errors() {
    return this.entries.filter((e) => e.level === 'error');
  }

  logs() {
    return this.entries.filter((e) => e.level === 'log').map((e) => e.text);
  }

  // waitFor resolves with the first entry matching pred (past or future); it
  // rejects as soon as the example reports an error through console.error.
  waitFor(pred, ms = 10000, what = 'console output') {
    const test = typeof pred === 'function' ? pred : (e) => e.level === 'log' && e.text.includes(pred);
    const seen = this.entries.find(test);
    if (seen) return Promise.resolve(seen);
    const err = this.errors()[0];
    if (err) return Promise.reject(new Error(`example ${this.label} reported an error: ${err.text}`));
    return withTimeout(new Promise((resolve, reject) => {
      const on = (e) => {
        if (test(e)) {
          this.off('entry', on);
          resolve(e);
        } else if (e.level === 'error') {
          this.off('entry', on);
          reject(new Error(`example ${this.label} reported an error: ${e.text}`));
        }
      };
      this.on('entry', on);
    }), ms, `${what} from example ${this.label} (seen: ${JSON.stringify(this.entries.map((e) => e.text))})`);
  }
}

function fmt(v) {
  if (typeof v === 'string') return v;
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

// track wraps obj so that every promise returned by one of its methods is
// recorded in calls (in call order) as {method, args, promise}.
function track(obj, calls) {
  return new Proxy(obj, {
    // Accessors run on the real object: the SDK keeps state in WeakMaps keyed
    // by it.
    set(target, prop, value) {
      return Reflect.set(target, prop, value, target);
    },
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== 'function' || prop === 'constructor') return v;
      // A function proxy keeps `new obj.Class(...)` and static members working.
      return new Proxy(v, {
        apply(fn, thisArg, args) {
          const r = Reflect.apply(fn, thisArg === receiver ? target : thisArg, args);
          if (r && typeof r.then === 'function') {
            r.catch(() => {}); // observed by the test through calls
            calls.push({ method: String(prop), args, promise: r });
          } else if (r === target) {
            return receiver; // keep chaining (query.contains(...).lessThan(...)) tracked
          } else if (isInstance(r)) {
            return track(r, calls); // e.g. getQuery(), createMessagesIterator()
          }
          return r;
        },
      });
    },
  });
}

function isInstance(v) {
  if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof Date || Buffer.isBuffer(v)) return false;
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype) return Object.values(v).some((x) => typeof x === 'function'); // e.g. an iterator
  return proto !== null;
}

// run evaluates example `line` with env as its free variables. It returns
// {console, calls, result, thrown}: `thrown` is a synchronous exception of the
// example itself (tests assert on it where the guide's code throws).
//
// placeholders maps an id the guide prints as a stand-in (the literal
// 'CONVERSATION_ID', the sample id '551260efe4b01608686c3e0f') to the id of
// the conversation the test created; each must occur in the example.
async function run(line, env = {}, { require: req, placeholders = {} } = {}) {
  const con = new RecordingConsole(String(line));
  const calls = [];
  const vars = { require: req || require, console: con };
  for (const [k, v] of Object.entries(env)) {
    vars[k] = v && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v) ? track(v, calls) : v;
  }
  const names = Object.keys(vars);
  let src = source(line);
  for (const [from, to] of Object.entries(placeholders)) {
    const lit = `'${from}'`;
    if (!src.includes(lit)) throw new Error(`example ${line} has no placeholder ${lit}`);
    src = src.split(lit).join(JSON.stringify(to));
  }
  const fn = new AsyncFunction(...names, src);
  let result;
  let thrown = null;
  try {
    result = await fn(...names.map((n) => vars[n]));
  } catch (e) {
    thrown = e;
  }
  return { console: con, calls, result, thrown };
}

// settle waits for the tracked call `method` (the n-th one) and returns its
// value, or throws its rejection.
// Calls made later in the example's own callbacks are waited for.
async function settle(ran, method, n = 0, ms = 15000) {
  const { poll } = require('./harness');
  const c = await poll(`call #${n} to ${method} by the example`, () => ran.calls.filter((x) => x.method === method)[n], ms)
    .catch((e) => {
      const err = ran.console.errors()[0];
      throw new Error(`${e.message} (calls: ${ran.calls.map((x) => x.method)}; console.error: ${err ? err.text : 'none'})`);
    });
  return withTimeout(c.promise, ms, `${method}() of the example`);
}

module.exports = { run, settle, printed, source, compiles, REPAIRS, RecordingConsole, DIR };
