#!/usr/bin/env node
// A tiny GUN relay for gunsync's tests: the HTTP API of OIP's gun-relay-server.js (DESIGN §3),
// answering like a plain GUN relay (raw nodes: `_` metadata, nested objects as links, nulls kept).
//
//   RELAY_PORT      port on 127.0.0.1 (0 = any; the chosen port is printed as `listening <port>`)
//   RELAY_DATA_DIR  radisk storage directory (default: a fresh temp dir)
//   RELAY_GET_WAIT  ms `get` waits for a node before answering 404 (default 1000)
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { URL } = require('url');

const Gun = require('gun');

const port = Number(process.env.RELAY_PORT || 8765);
const dataDir = process.env.RELAY_DATA_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'gunsync-relay-'));
const getWaitMs = Number(process.env.RELAY_GET_WAIT || 1000);

// Records put at a soul root, for /list: soul -> { soul, data, recordType, storedAt }.
const published = new Map();

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function handlePut(req, res) {
  let soul;
  let data;
  try {
    const body = JSON.parse(await readBody(req));
    soul = body.soul;
    data = body.data;
    if (typeof soul !== 'string' || soul.length === 0) throw new Error('no soul');
  } catch (_) {
    return send(res, 400, { error: 'Invalid JSON' });
  }
  let answered = false;
  const answer = (status, body) => {
    if (answered) return;
    answered = true;
    send(res, status, body);
  };
  try {
    gun.get(soul).put(data, (ack) => {
      if (ack.err) return answer(500, { error: String(ack.err) });
      if (data && typeof data === 'object') {
        const recordType = (data.oip && data.oip.recordType) || null;
        published.set(soul, { soul, data, recordType, storedAt: Date.now() });
      }
      answer(200, { success: true, soul });
    });
  } catch (err) {
    answer(500, { error: String(err && err.message ? err.message : err) });
  }
  // A put GUN never acknowledges must still be answered.
  setTimeout(() => answer(500, { error: 'put not acknowledged' }), 10000);
}

function handleGet(url, res) {
  const soul = url.searchParams.get('soul');
  if (!soul) return send(res, 400, { error: 'Soul parameter required' });
  let answered = false;
  const timer = setTimeout(() => {
    if (answered) return;
    answered = true;
    send(res, 404, { error: 'Not found' });
  }, getWaitMs);
  gun.get(soul).once((node) => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    if (node === undefined || node === null) return send(res, 404, { error: 'Not found' });
    send(res, 200, { success: true, data: node });
  }, { wait: Math.min(getWaitMs, 150) });
}

function handleList(url, res) {
  const publisherHash = url.searchParams.get('publisherHash');
  if (!publisherHash) return send(res, 400, { error: 'publisherHash parameter required' });
  const limit = Math.max(0, parseInt(url.searchParams.get('limit') || '50', 10) || 50);
  const offset = Math.max(0, parseInt(url.searchParams.get('offset') || '0', 10) || 0);
  const records = [...published.values()]
    .filter((r) => r.soul.split(':')[0] === publisherHash)
    .sort((a, b) => (a.soul < b.soul ? -1 : 1))
    .slice(offset, offset + limit);
  send(res, 200, { success: true, records });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'POST' && url.pathname === '/put') return void handlePut(req, res);
  if (req.method === 'GET' && url.pathname === '/get') return handleGet(url, res);
  if (req.method === 'GET' && url.pathname === '/list') return handleList(url, res);
  send(res, 404, { error: 'Endpoint not found' });
});

const gun = Gun({ web: server, file: dataDir, radisk: true, localStorage: false, multicast: false, axe: false });

server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
