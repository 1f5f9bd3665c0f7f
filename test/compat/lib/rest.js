'use strict';
// The server-side REST API with the master key, as an app's back end calls it.

async function rest(h, app, method, path, body, i = 0) {
  const res = await fetch(`http://${h.node(i).client}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', 'X-LC-Id': app.appId, 'X-LC-Key': `${app.masterKey},master` },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  if (!res.ok) {
    const err = new Error(`${method} ${path}: ${res.status} ${text}`);
    Object.assign(err, { status: res.status, body: json });
    throw err;
  }
  return json;
}

module.exports = { rest };
