// Shared by the k6 scenarios: the guide's request mix against arrwdb, and Trends of the batching
// headers.  Run with an official k6 binary (see README): k6 run loadtest/k6/load.js
//
// Every request is written out literally (path template and JSON body inline) so that
// tests/loadtest/test_k6_scripts.py can check each path and field against the server's OpenAPI schema.

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Trend } from 'k6/metrics';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const API_KEY = __ENV.API_KEY || '';

// The guide's thresholds: p95 under 500 ms and under 1% failed requests.
export const THRESHOLDS = {
  http_req_duration: ['p(95)<500'],
  http_req_failed: ['rate<0.01'],
};

// The batching headers of each search, as their own Trends (the timings in ms).  A search answered
// from the result cache reports batch size 0 and compute 0.
const queueMs = new Trend('arrwdb_queue_ms', true);
const computeMs = new Trend('arrwdb_compute_ms', true);
const batchSize = new Trend('arrwdb_batch_size');

const WORDS = (
  'river mountain data vector search engine ocean cloud music history science garden market city storm ' +
  'language memory signal forest planet energy network health travel recipe bridge theory window winter'
).split(' ');
const CATEGORIES = ['science', 'travel', 'music', 'health', 'finance'];

function pick(items) {
  return items[Math.floor(Math.random() * items.length)];
}

function words(n) {
  const out = [];
  for (let i = 0; i < n; i += 1) out.push(pick(WORDS));
  return out.join(' ');
}

function params(name) {
  const headers = { 'Content-Type': 'application/json' };
  if (API_KEY) headers['X-API-Key'] = API_KEY;
  return { headers: headers, tags: { name: name } };
}

function recordHeaders(res) {
  const queue = res.headers['X-Queue-Ms'];
  const compute = res.headers['X-Compute-Ms'];
  const size = res.headers['X-Batch-Size'];
  if (queue !== undefined) queueMs.add(parseFloat(queue));
  if (compute !== undefined) computeMs.add(parseFloat(compute));
  if (size !== undefined) batchSize.add(parseInt(size, 10));
}

export function createLibrary() {
  const name = `k6-${Date.now()}-${Math.floor(Math.random() * 1e9)}`;
  const res = http.post(`${BASE_URL}/v1/libraries`, JSON.stringify({ name: name }), params('create library'));
  check(res, { 'library created': (r) => r.status === 201 });
  return res.status === 201 ? res.json('id') : null;
}

export function deleteLibrary(library) {
  const res = http.del(`${BASE_URL}/v1/libraries/${library}`, null, params('delete library'));
  check(res, { 'library deleted': (r) => r.status === 204 });
}

export function addDocument(library) {
  const res = http.post(
    `${BASE_URL}/v1/libraries/${library}/documents`,
    JSON.stringify({
      title: words(3),
      text: `${words(12 + Math.floor(Math.random() * 28))}.`,
      metadata: { category: pick(CATEGORIES), year: 2015 + Math.floor(Math.random() * 11) },
    }),
    params('add document'),
  );
  check(res, { 'document added': (r) => r.status === 201 && r.json('id') !== undefined });
}

export function addDocuments(library, count) {
  const documents = Array.from({ length: count }, () => ({
    title: words(3),
    text: `${words(20)}.`,
    metadata: { category: pick(CATEGORIES) },
  }));
  const res = http.post(
    `${BASE_URL}/v1/libraries/${library}/documents/batch`,
    JSON.stringify({ documents: documents }),
    params('add documents'),
  );
  check(res, { 'documents added': (r) => r.status === 201 && r.json('ids.#') === count });
}

export function search(library) {
  const filtered = Math.random() < 0.2;
  const res = http.post(
    `${BASE_URL}/v1/libraries/${library}/search`,
    JSON.stringify({
      query: words(3),
      k: 10,
      include_text: true,
      filter: filtered ? { category: pick(CATEGORIES) } : null,
    }),
    params('search'),
  );
  check(res, { 'search ok': (r) => r.status === 200 && Array.isArray(r.json('results')) });
  if (res.status === 200) recordHeaders(res);
}

export function readStatistics(library) {
  const res = http.get(`${BASE_URL}/v1/libraries/${library}/statistics`, params('statistics'));
  check(res, { 'statistics ok': (r) => r.status === 200 && r.json('document_count') >= 0 });
}

export function listDocuments(library) {
  const res = http.get(`${BASE_URL}/v1/libraries/${library}/documents?limit=20`, params('list documents'));
  check(res, { 'list ok': (r) => r.status === 200 && Array.isArray(r.json('documents')) });
}

// One library per VU, made on its first iteration (each VU has its own copy of this module), as the
// Locust API user makes one on start.
let ownLibrary = null;

// The guide's API user: search 10, add a document 5, statistics 2, list documents 1.
export function apiIteration() {
  if (ownLibrary === null) {
    ownLibrary = createLibrary();
    if (ownLibrary === null) return;
    addDocuments(ownLibrary, 5);
  }
  const roll = Math.random() * 18;
  if (roll < 10) search(ownLibrary);
  else if (roll < 15) addDocument(ownLibrary);
  else if (roll < 17) readStatistics(ownLibrary);
  else listDocuments(ownLibrary);
}

// The guide's workflow user: create, add 5 documents, search twice, delete.
export function workflowIteration() {
  const library = createLibrary();
  if (library === null) return;
  for (let i = 0; i < 5; i += 1) addDocument(library);
  search(library);
  search(library);
  deleteLibrary(library);
}

// Four API iterations for each workflow, then the guide's 1-3 s think time.
export function mixedIteration() {
  if (Math.random() < 0.8) apiIteration();
  else workflowIteration();
  sleep(1 + Math.random() * 2);
}
