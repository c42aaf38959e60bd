// Helpers for the node tests: a free port, a local image server, and a real imgproc process.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, createWriteStream } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Serves the files of `dir` (the repository's examples/images) on 127.0.0.1, like a CDN: each
// with an ETag, a matching If-None-Match answered 304; under /no-store/ the same files with
// Cache-Control: no-store. Counts the answers by path and status; `add` serves one more file.
export async function startImageServer(dir) {
  const files = new Map(readdirSync(dir).map((name) => [`/${name}`, readFileSync(path.join(dir, name))]));
  const etag = (body) => `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
  const answers = new Map();  // "<path> <status>" -> count
  const server = http.createServer((req, res) => {
    const noStore = req.url.startsWith('/no-store/');
    const body = files.get(noStore ? req.url.slice('/no-store'.length) : req.url);
    const answer = (status) => answers.set(`${req.url} ${status}`, (answers.get(`${req.url} ${status}`) || 0) + 1);
    if (!body) {
      answer(404);
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    const headers = { ETag: etag(body), ...(noStore ? { 'Cache-Control': 'no-store' } : {}) };
    const wanted = (req.headers['if-none-match'] || '').split(',').map((t) => t.trim().replace(/^W\//, ''));
    if (wanted.includes(headers.ETag)) {
      answer(304);
      res.writeHead(304, headers);
      res.end();
      return;
    }
    answer(200);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length, ...headers });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    size: (name) => files.get(`/${name}`).length,
    file: (name) => files.get(`/${name}`),
    add: (name, body) => { files.set(`/${name}`, body); },
    answered: (name, status) => answers.get(`/${name} ${status}`) || 0,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

// Runs `imgproc serve` from IMGPROC_BINARY on a free port with a fresh DATA_DIR.
export async function startImgproc(env = {}) {
  const binary = process.env.IMGPROC_BINARY;
  if (!binary) throw new Error('IMGPROC_BINARY is not set (ctest sets it)');
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'imgproc-web-'));
  const port = await freePort();
  const log = createWriteStream(path.join(dataDir, 'imgproc.log'));
  const child = spawn(binary, ['serve'], {
    env: { ...process.env, PORT: String(port), BIND: '127.0.0.1', DATA_DIR: dataDir,
           ALLOW_PRIVATE_URLS: '1', WORKERS: '4', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const base = `http://127.0.0.1:${port}`;
  const readLog = () => { try { return readFileSync(path.join(dataDir, 'imgproc.log'), 'utf8'); } catch { return ''; } };
  for (let i = 0; i < 200; i++) {  // up to 20 s
    if (exited) throw new Error(`imgproc exited (${JSON.stringify(exited)}):\n${readLog()}`);
    try {
      const res = await fetch(`${base}/healthz`);
      if (res.ok) break;
    } catch { /* not listening yet */ }
    if (i === 199) throw new Error(`imgproc did not answer /healthz:\n${readLog()}`);
    await sleep(100);
  }
  return {
    base,
    dataDir,
    log: readLog,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');  // only the process this helper started, by its handle
        for (let i = 0; i < 300 && !exited; i++) await sleep(100);
        if (!exited) child.kill('SIGKILL');
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// Polls the status until "completed" (at most `tries` times, 100 ms apart).
export async function waitForCompletion(base, id, tries = 600) {
  let body = null;
  for (let i = 0; i < tries; i++) {
    const res = await fetch(`${base}/status/${id}/`);
    body = await res.json();
    if (body.status === 'completed') return body;
    await sleep(100);
  }
  throw new Error(`request ${id} did not complete: ${JSON.stringify(body)}`);
}

// A CSV in the original design's format naming the example images on `images`.
export function exampleCsv(images) {
  return [
    'S. No.,Product Name,Input Image Urls',
    `1,SKU1,${images.url('img1.jpg')},${images.url('img2.jpg')}`,
    `2,SKU2,${images.url('img3.png')},${images.url('img4.webp')},local-only.jpg`,
    `3,SKU3,${images.url('missing.jpg')}`,
    '',
  ].join('\n');
}
