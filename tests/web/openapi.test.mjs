// Every response of a real imgproc process is checked against the OpenAPI document it serves
// (docs/openapi.json, compiled into the binary): status code listed, content type listed, body
// valid against the schema (JSON Schema 2020-12, with ajv). Every operation must be exercised.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

import { exampleCsv, startImageServer, startImgproc, waitForCompletion } from './support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const examples = process.env.EXAMPLES_DIR || path.join(here, '../../examples/images');
const kMaxCsv = 4096;

let server;
let images;
let doc;
let ajv;
let firstDone;  // the status of the first example request that completed
const exercised = new Set();
const kObject = /\/media\/objects\/[0-9a-f]{64}_jpeg-q50\.jpg$/;

// The schema of one documented response, compiled by JSON pointer into the document.
function responseSchema(template, method, status, contentType) {
  const op = doc.paths[template]?.[method];
  assert.ok(op, `${method.toUpperCase()} ${template} is not in the document`);
  const response = op.responses[String(status)];
  assert.ok(response, `${method.toUpperCase()} ${template}: status ${status} is not documented`);
  const media = Object.keys(response.content || {});
  const base = contentType.split(';')[0].trim();
  const key = media.find((m) => m === contentType) || media.find((m) => m.split(';')[0].trim() === base);
  assert.ok(key, `${method.toUpperCase()} ${template} ${status}: content type '${contentType}' not in [${media}]`);
  const escape = (s) => encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'));
  const pointer = ['paths', template, method, 'responses', String(status), 'content', key, 'schema']
    .map(escape).join('/');
  const validate = ajv.getSchema(`openapi.json#/${pointer}`);
  assert.ok(validate, `cannot compile the schema at ${pointer}`);
  return validate;
}

// Sends a request and checks its answer against the document; returns { res, body }.
async function call(template, method, url, { init = {}, expect } = {}) {
  const res = await fetch(server.base + url, { method: method.toUpperCase(), ...init });
  const contentType = res.headers.get('content-type') || '';
  const text = await res.text();
  if (expect !== undefined) assert.equal(res.status, expect, `${method} ${url}: ${text}`);
  const validate = responseSchema(template, method, res.status, contentType);
  const body = contentType.startsWith('application/json') ? JSON.parse(text) : text;
  const valid = validate(body);
  assert.ok(valid, `${method.toUpperCase()} ${url} ${res.status} does not match the document: ` +
    `${ajv.errorsText(validate.errors)}\n${text.slice(0, 2000)}`);
  exercised.add(`${method} ${template}`);
  return { res, body };
}

function upload(csv, extra = {}) {
  const form = new FormData();
  if (csv !== undefined) form.append('csv_file', new Blob([csv], { type: 'text/csv' }), 'products.csv');
  for (const [k, v] of Object.entries(extra)) form.append(k, v);
  return { body: form };
}

// Uploads `csv` (with the form fields of `extra`), waits for completion; returns the status.
async function importCsv(csv, extra = {}) {
  const { body } = await call('/api/p/upload/', 'post', '/api/p/upload/', { init: upload(csv, extra), expect: 202 });
  return waitForCompletion(server.base, body.request_id);
}

// The value of one series of /metrics (0 when absent).
async function metric(series) {
  const text = await (await fetch(`${server.base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

// The products' output URLs, in file order, one list per product.
const outputsOf = (status) => status.products.map((p) => (p['Output Image Urls'] || '').split(','));

before(async () => {
  images = await startImageServer(examples);
  server = await startImgproc({ MAX_CSV_BYTES: String(kMaxCsv) });
  doc = await (await fetch(`${server.base}/openapi.json`)).json();
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(doc, 'openapi.json');
});

after(async () => {
  await server?.stop();
  await images?.close();
});

test('the served document is docs/openapi.json, OpenAPI 3.1', async () => {
  const file = JSON.parse(readFileSync(process.env.OPENAPI_FILE || path.join(here, '../../docs/openapi.json'), 'utf8'));
  const { body } = await call('/openapi.json', 'get', '/openapi.json', { expect: 200 });
  assert.deepEqual(body, file);
  assert.equal(body.openapi, '3.1.0');
});

test('upload: 202, 400 (no file, bad CSV, bad webhook), 413 (API and transport)', async () => {
  const ok = await call('/api/p/upload/', 'post', '/api/p/upload/', { init: upload(exampleCsv(images)), expect: 202 });
  assert.match(ok.body.request_id, /^[0-9a-f-]{36}$/);
  const none = await call('/api/p/upload/', 'post', '/api/p/upload/', { init: upload(undefined, { other: 'x' }), expect: 400 });
  assert.deepEqual(none.body, { error: 'No CSV file provided' });
  const bad = await call('/api/p/upload/', 'post', '/api/p/upload/', {
    init: upload('Serial Number,Product Name,Input Image Urls\nx,SKU,http://a/1.jpg\n'), expect: 400 });
  assert.equal(bad.body.error, 'Invalid CSV format');
  assert.deepEqual(bad.body.details[0].row, 2);
  await call('/api/p/upload/', 'post', '/api/p/upload/', { init: upload(exampleCsv(images), { webhook_url: 'ftp://x' }), expect: 400 });
  const refresh = await call('/api/p/upload/', 'post', '/api/p/upload/', {
    init: upload(exampleCsv(images), { refresh: 'maybe' }), expect: 400 });
  assert.deepEqual(refresh.body, { error: 'Invalid refresh: use true or false' });
  await call('/api/p/upload/', 'post', '/api/p/upload/', { init: upload('x'.repeat(kMaxCsv + 1)), expect: 413 });
  await call('/api/p/upload/', 'post', '/api/p/upload/', { init: upload('x'.repeat(kMaxCsv + 128 * 1024)), expect: 413 });
});

test('status 200 while processing and when completed, 404; output CSV; media; list', async () => {
  const { body } = await call('/api/p/upload/', 'post', '/api/p/upload/', { init: upload(exampleCsv(images)), expect: 202 });
  const id = body.request_id;
  await call('/status/{request_id}/', 'get', `/status/${id}/`, { expect: 200 });
  const done = await waitForCompletion(server.base, id);
  firstDone = done;
  const status = await call('/status/{request_id}/', 'get', `/status/${id}/`, { expect: 200 });
  assert.deepEqual(status.body, done);
  assert.equal(done.progress.images_total, 5);
  assert.equal(done.progress.images_failed, 1);
  assert.equal(done.products[0]['Image Sizes'][0].input_bytes, images.size('img1.jpg'));
  assert.match(done.products[0]['Output Image Urls'].split(',')[0], kObject);
  // A page of the products: the same shape, with `page`.
  const page = await call('/status/{request_id}/', 'get', `/status/${id}/?offset=1&limit=1`, { expect: 200 });
  assert.deepEqual(page.body.products, [done.products[1]]);
  assert.deepEqual(page.body.page, { offset: 1, limit: 1, total: done.products.length });
  await call('/status/{request_id}/', 'get', `/status/${id}/?limit=-1`, { expect: 400 });
  await call('/status/{request_id}/', 'get', '/status/00000000-0000-4000-8000-000000000000/', { expect: 404 });
  await call('/status/{request_id}/', 'get', '/status/not-a-uuid/', { expect: 404 });

  const csv = await call('/api/p/requests/{request_id}/output.csv', 'get', `/api/p/requests/${id}/output.csv`, { expect: 200 });
  assert.match(csv.body, /^Serial Number,Product Name,Input Image Urls,Output Image Urls\r\n/);
  const withErrors = await call('/api/p/requests/{request_id}/output.csv', 'get', `/api/p/requests/${id}/output.csv?errors=1`, { expect: 200 });
  assert.match(withErrors.body, /,Errors\r\n/);
  assert.match(withErrors.body, /missing\.jpg: download failed: HTTP 404/);
  await call('/api/p/requests/{request_id}/output.csv', 'get', '/api/p/requests/00000000-0000-4000-8000-000000000000/output.csv', { expect: 404 });

  // Outputs are content-addressed objects (the image cache); per request for a no-store image.
  const firstOutput = done.products[0]['Output Image Urls'].split(',')[0];
  const media = await call('/media/objects/{name}', 'get', new URL(firstOutput).pathname, { expect: 200 });
  assert.equal(media.res.headers.get('content-type'), 'image/jpeg');
  await call('/media/objects/{name}', 'get', `/media/objects/${'0'.repeat(64)}_jpeg-q50.jpg`, { expect: 404 });
  const noStore = await importCsv(`Serial Number,Product Name,Input Image Urls\n1,P,${images.url('no-store/img4.webp')}\n`);
  const ownOutput = new URL(noStore.products[0]['Output Image Urls']).pathname;
  assert.equal(ownOutput, `/media/${noStore.request_id}/1_0.jpg`);
  const own = await call('/media/{request_id}/{name}', 'get', ownOutput, { expect: 200 });
  assert.equal(own.res.headers.get('content-type'), 'image/jpeg');
  await call('/media/{request_id}/{name}', 'get', `/media/${id}/9_9.jpg`, { expect: 404 });

  // Cancel: a completed request cannot be (409); one whose image keeps failing for now (a
  // refused connection, retried with backoff) is still processing, and is cancelled (200).
  await call('/api/p/requests/{request_id}/cancel', 'post', `/api/p/requests/${id}/cancel`, { expect: 409 });
  await call('/api/p/requests/{request_id}/cancel', 'post', '/api/p/requests/00000000-0000-4000-8000-000000000000/cancel', { expect: 404 });
  const stuck = await call('/api/p/upload/', 'post', '/api/p/upload/', {
    init: upload('Serial Number,Product Name,Input Image Urls\n1,P,http://127.0.0.1:9/refused.jpg\n'), expect: 202 });
  const cancelled = await call('/api/p/requests/{request_id}/cancel', 'post', `/api/p/requests/${stuck.body.request_id}/cancel`, { expect: 200 });
  assert.equal(cancelled.body.status, 'cancelled');
  assert.equal(cancelled.body.products[0]['Image Errors'][0].error, 'cancelled');

  const list = await call('/api/p/requests/', 'get', '/api/p/requests/?limit=5', { expect: 200 });
  assert.ok(list.body.requests.some((r) => r.request_id === id));
  await call('/api/p/requests/', 'get', '/api/p/requests/?limit=0', { expect: 400 });
});

test('presets: the list, an upload with variants, a 400 naming the field, variants in status, CSV and media', async () => {
  const presets = await call('/api/p/presets', 'get', '/api/p/presets', { expect: 200 });
  assert.deepEqual(presets.body.presets.thumb,
    { format: 'webp', quality: 70, max_width: 400, max_height: 400, progressive: false });
  const bad = await call('/api/p/upload/', 'post', '/api/p/upload/', {
    init: upload(exampleCsv(images), { presets: 'thumb,huge' }), expect: 400 });
  assert.equal(bad.body.field, 'presets');
  assert.match(bad.body.details, /"huge"/);
  const quality = await call('/api/p/upload/', 'post', '/api/p/upload/', {
    init: upload(exampleCsv(images), { format: 'avif', quality: '0' }), expect: 400 });
  assert.deepEqual(quality.body, { error: 'Invalid quality', field: 'quality',
    details: 'quality must be a whole number from 1 to 100' });

  const { body } = await call('/api/p/upload/', 'post', '/api/p/upload/', {
    init: upload(exampleCsv(images), { format: 'webp', max_width: '64', presets: 'thumb' }), expect: 202 });
  const done = await waitForCompletion(server.base, body.request_id);
  const status = await call('/status/{request_id}/', 'get', `/status/${body.request_id}/`, { expect: 200 });
  assert.deepEqual(status.body.outputs.main,
    { format: 'webp', quality: 70, max_width: 64, max_height: 0, progressive: false });
  assert.deepEqual(Object.keys(status.body.outputs.variants), ['thumb']);
  const product = done.products[0];
  const main = product['Output Image Urls'].split(',')[0];
  const thumb = product.Variants.thumb.split(',')[0];
  assert.match(main, /\.webp$/);
  assert.match(thumb, /\.webp$/);
  assert.notEqual(main, thumb);
  const size = product['Image Sizes'][0];
  assert.equal(size.variants.thumb.url, thumb);
  assert.ok(size.variants.thumb.width <= 400 && size.variants.thumb.height <= 400);
  const media = await call('/media/objects/{name}', 'get', new URL(thumb).pathname, { expect: 200 });
  assert.equal(media.res.headers.get('content-type'), 'image/webp');
  const csv = await call('/api/p/requests/{request_id}/output.csv', 'get',
    `/api/p/requests/${body.request_id}/output.csv`, { expect: 200 });
  assert.match(csv.body, /^Serial Number,Product Name,Input Image Urls,Output Image Urls,thumb Image Urls\r\n/);
});

test('retry: 404, 409 while running and with nothing failed, 200 on a finished request with a failed image', async () => {
  await call('/api/p/requests/{request_id}/retry', 'post', '/api/p/requests/00000000-0000-4000-8000-000000000000/retry', { expect: 404 });
  assert.equal((await fetch(`${server.base}/api/p/requests/00000000-0000-4000-8000-000000000000/retry`)).status, 405);

  // Still running (an image that keeps failing for now): 409. Cancelled, it can be retried, and
  // goes back to processing (then it is cancelled again, to stop it).
  const stuck = await call('/api/p/upload/', 'post', '/api/p/upload/', {
    init: upload('Serial Number,Product Name,Input Image Urls\n1,P,http://127.0.0.1:9/refused.jpg\n'), expect: 202 });
  const stuckId = stuck.body.request_id;
  const running = await call('/api/p/requests/{request_id}/retry', 'post', `/api/p/requests/${stuckId}/retry`, { expect: 409 });
  assert.deepEqual(running.body, { error: 'Request still running: retry it once it has finished' });
  await call('/api/p/requests/{request_id}/cancel', 'post', `/api/p/requests/${stuckId}/cancel`, { expect: 200 });
  const again = await call('/api/p/requests/{request_id}/retry', 'post', `/api/p/requests/${stuckId}/retry`, { expect: 200 });
  assert.equal(again.body.status, 'processing');
  assert.equal(again.body.progress.images_failed, 0);
  assert.equal(again.body.products[0]['Output Image Urls'], null);
  await call('/api/p/requests/{request_id}/cancel', 'post', `/api/p/requests/${stuckId}/cancel`, { expect: 200 });

  // Nothing failed: 409 (also at the path with a trailing slash).
  const clean = await importCsv(`Serial Number,Product Name,Input Image Urls\n1,P,${images.url('img1.jpg')}\n`);
  const nothing = await call('/api/p/requests/{request_id}/retry', 'post', `/api/p/requests/${clean.request_id}/retry/`, { expect: 409 });
  assert.deepEqual(nothing.body, { error: 'Request has no failed images: nothing to retry' });

  // A completed request whose image was missing (404): once the host has it, a retry redoes that
  // image only, and the request completes again without a failure.
  const retriedBefore = await metric('imgproc_requests_retried_total');
  const csv = `Serial Number,Product Name,Input Image Urls\n1,P,${images.url('img2.jpg')},${images.url('late.png')}\n`;
  const failed = await importCsv(csv);
  assert.equal(failed.progress.images_failed, 1);
  assert.match(failed.products[0]['Image Errors'][0].error, /HTTP 404/);
  images.add('late.png', images.file('img3.png'));
  const retried = await call('/api/p/requests/{request_id}/retry', 'post', `/api/p/requests/${failed.request_id}/retry`, { expect: 200 });
  assert.equal(retried.body.status, 'processing');
  assert.equal(retried.body.products[0]['Output Image Urls'], null);
  assert.deepEqual(retried.body.products[0]['Image Errors'], []);
  const done = await waitForCompletion(server.base, failed.request_id);
  assert.deepEqual([done.progress.images_done, done.progress.images_failed], [2, 0]);
  const [kept, redone] = outputsOf(done)[0];
  assert.equal(kept, outputsOf(failed)[0][0]);
  // late.png has img3.png's bytes, stored by the example request: its output is reused.
  assert.equal(redone, outputsOf(firstDone)[1][0]);
  assert.ok(done.products[0]['Image Sizes'].find((s) => s.index === 1).reused, JSON.stringify(done));
  assert.equal(await metric('imgproc_requests_retried_total'), retriedBefore + 1);
  await call('/status/{request_id}/', 'get', `/status/${failed.request_id}/`, { expect: 200 });
});

test('a re-import reuses the stored outputs (304, same bytes); refresh=true makes them anew', async () => {
  // The example's images again: each host answers 304 to the conditional request.
  const notModified = await metric('imgproc_images_reused_total{how="not_modified"}');
  const reused = await importCsv(exampleCsv(images));
  assert.deepEqual(outputsOf(reused), outputsOf(firstDone));
  assert.equal(reused.progress.images_reused, 4);
  for (const p of reused.products) assert.ok(p['Image Sizes'].every((s) => s.reused), JSON.stringify(p));
  assert.ok(images.answered('img1.jpg', 304) >= 1);
  assert.ok(await metric('imgproc_images_reused_total{how="not_modified"}') >= notModified + 4);
  const list = await call('/api/p/requests/', 'get', '/api/p/requests/?limit=1', { expect: 200 });
  assert.equal(list.body.requests[0].progress.images_reused, 4);

  // refresh=true: downloaded and compressed anew (the same content: the same objects).
  const fresh = await importCsv(exampleCsv(images), { refresh: 'true' });
  assert.deepEqual(outputsOf(fresh), outputsOf(firstDone));
  assert.equal(fresh.progress.images_reused, 0);

  // One request naming a URL three times downloads it once; the other two slots reuse it.
  const downloads = images.answered('img2.jpg', 200);
  const url = images.url('img2.jpg');
  const twice = await importCsv(`Serial Number,Product Name,Input Image Urls\n1,A,"${url},${url}"\n2,B,${url}\n`,
    { refresh: '1' });
  assert.equal(images.answered('img2.jpg', 200), downloads + 1);
  const outputs = outputsOf(twice).flat();
  assert.equal(new Set(outputs).size, 1, JSON.stringify(outputs));
  assert.equal(twice.progress.images_reused, 2);

  // A no-store image is never reused: made and stored again, per request.
  const csv = `Serial Number,Product Name,Input Image Urls\n1,P,${images.url('no-store/img4.webp')}\n`;
  const noStore = await importCsv(csv);
  assert.equal(noStore.products[0]['Output Image Urls'], `${server.base}/media/${noStore.request_id}/1_0.jpg`);
  assert.equal(noStore.progress.images_reused, 0);
});

test('healthz, readyz, metrics, the web page', async () => {
  await call('/healthz', 'get', '/healthz', { expect: 200 });
  await call('/readyz', 'get', '/readyz', { expect: 200 });
  const metrics = await call('/metrics', 'get', '/metrics', { expect: 200 });
  assert.equal(metrics.res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  assert.match(metrics.body, /^imgproc_uploads_accepted_total \d+$/m);
  assert.match(metrics.body, /^imgproc_queue_depth \d+$/m);
  assert.match(metrics.body, /^imgproc_requests_retried_total \d+$/m);
  assert.match(metrics.body, /^imgproc_images_reused_total\{how="not_modified"\} \d+$/m);
  assert.match(metrics.body, /^imgproc_images_reused_total\{how="same_content"\} \d+$/m);
  const page = await call('/', 'get', '/', { expect: 200 });
  assert.match(page.body, /<title>imgproc<\/title>/);
});

test('every documented operation was exercised', () => {
  const documented = [];
  for (const [template, ops] of Object.entries(doc.paths)) {
    for (const method of Object.keys(ops)) documented.push(`${method} ${template}`);
  }
  assert.deepEqual(documented.filter((op) => !exercised.has(op)), []);
});
