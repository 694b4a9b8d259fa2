// The official `openai` SDK against the running arbiter binary, which proxies
// to the fake upstream (DESIGN.md §3). Run through ctest (`ctest -L e2e`), or:
//   cd tests/e2e && npm ci && ARBITER_BIN=... FAKE_UPSTREAM_BIN=... node --test

import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';

import OpenAI from 'openai';

import { PROVIDER_KEY, closedPort, makeClient, startStack } from './harness.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const MODEL = 'gpt-4o-mini';
const CONTENT = 'The quick brown fox jumps over the lazy dog again and again';
const MESSAGES = [{ role: 'user', content: 'Say something about foxes.' }];
const TEST_TIMEOUT = { timeout: 60_000 };

async function collectStream(stream) {
  const deltas = [];
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    const delta = chunk.choices?.[0]?.delta?.content;
    if (delta) deltas.push({ text: delta, at: performance.now() });
  }
  return { deltas, chunks, text: deltas.map((d) => d.text).join('') };
}

// Asserts that `promise` rejects with an SDK error of class `ErrorClass` and
// `status`; returns the error for further checks.
async function expectApiError(promise, ErrorClass, status) {
  let caught;
  await assert.rejects(promise, (err) => {
    caught = err;
    return true;
  });
  assert.ok(caught instanceof ErrorClass,
            `expected ${ErrorClass.name}, got ${caught?.constructor?.name}: ${caught?.message}`);
  assert.equal(caught.status, status);
  return caught;
}

// The echo body's headers as a lower-cased name → [values] map, whether the
// fake reports them as an object or as [name, value] pairs.
function echoedHeaders(echo) {
  const map = new Map();
  const add = (name, value) => {
    const key = String(name).toLowerCase();
    map.set(key, [...(map.get(key) ?? []), String(value)]);
  };
  if (Array.isArray(echo.headers)) {
    for (const entry of echo.headers) {
      if (Array.isArray(entry)) add(entry[0], entry[1]);
      else add(entry.name, entry.value);
    }
  } else {
    for (const [name, value] of Object.entries(echo.headers ?? {})) {
      for (const v of Array.isArray(value) ? value : [value]) add(name, v);
    }
  }
  return map;
}

describe('openai SDK through arbiter', TEST_TIMEOUT, () => {
  let stack;
  let client;

  before(async () => {
    stack = await startStack();
    client = makeClient(stack);
  });

  after(async () => {
    await stack?.close();
  });

  it('creates a chat completion', async () => {
    const completion = await client.chat.completions.create(
        { model: MODEL, messages: MESSAGES }, { headers: { 'x-fake-content': CONTENT } });
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, MODEL);
    assert.equal(completion.choices.length, 1);
    assert.equal(completion.choices[0].message.role, 'assistant');
    assert.equal(completion.choices[0].message.content, CONTENT);
    const { usage } = completion;
    assert.ok(usage, 'usage present');
    for (const field of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
      assert.ok(Number.isInteger(usage[field]) && usage[field] > 0, `${field}=${usage[field]}`);
    }
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  });

  it('returns a Helicone-Id UUID header, honoring Helicone-Request-Id', async () => {
    const first = await client.chat.completions.create({ model: MODEL, messages: MESSAGES })
        .withResponse();
    assert.equal(first.response.status, 200);
    const id = first.response.headers.get('helicone-id');
    assert.match(id ?? '', UUID);
    assert.equal(first.data.choices[0].message.content.length > 0, true);

    const second = await client.chat.completions.create({ model: MODEL, messages: MESSAGES })
        .withResponse();
    assert.match(second.response.headers.get('helicone-id') ?? '', UUID);
    assert.notEqual(second.response.headers.get('helicone-id'), id);

    const requested = randomUUID();
    const honored = await client.chat.completions.create(
        { model: MODEL, messages: MESSAGES }, { headers: { 'Helicone-Request-Id': requested } })
        .withResponse();
    assert.equal(honored.response.headers.get('helicone-id'), requested);
  });

  it('streams every delta in order, matching the non-stream content', async () => {
    const headers = { 'x-fake-content': CONTENT, 'x-fake-chunks': '5' };
    const plain = await client.chat.completions.create({ model: MODEL, messages: MESSAGES },
                                                       { headers });
    const stream = await client.chat.completions.create(
        { model: MODEL, messages: MESSAGES, stream: true }, { headers });
    const { deltas, chunks, text } = await collectStream(stream);
    assert.equal(deltas.length, 5, `deltas: ${JSON.stringify(deltas.map((d) => d.text))}`);
    assert.equal(text, plain.choices[0].message.content);
    assert.equal(text, CONTENT);
    for (const chunk of chunks) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.model, MODEL);
    }
    const finish = chunks.map((c) => c.choices?.[0]?.finish_reason).filter(Boolean);
    assert.deepEqual(finish, ['stop']);
  });

  it('streams usage with stream_options.include_usage', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: MESSAGES,
      stream: true,
      stream_options: { include_usage: true },
    });
    const { chunks, text } = await collectStream(stream);
    assert.ok(text.length > 0);
    const withUsage = chunks.filter((c) => c.usage);
    assert.equal(withUsage.length, 1, 'exactly one usage chunk');
    const { usage } = withUsage[0];
    assert.ok(usage.completion_tokens > 0 && usage.prompt_tokens > 0);
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    assert.equal(chunks.at(-1), withUsage[0], 'usage chunk comes last');
  });

  it('relays a paced stream chunk by chunk, without buffering', async () => {
    const start = performance.now();
    const stream = await client.chat.completions.create(
        { model: MODEL, messages: MESSAGES, stream: true },
        { headers: { 'x-fake-content': CONTENT, 'x-fake-chunks': '6',
                     'x-fake-chunk-interval-ms': '150' } });
    const { deltas, text } = await collectStream(stream);
    const total = performance.now() - start;
    assert.equal(text, CONTENT);
    assert.equal(deltas.length, 6);
    const firstDelta = deltas[0].at - start;
    const spread = deltas.at(-1).at - deltas[0].at;
    const timings = `first delta at ${firstDelta.toFixed(0)} ms, last at ` +
                    `${(deltas.at(-1).at - start).toFixed(0)} ms, stream done at ${total.toFixed(0)} ms`;
    // 5 gaps of 150 ms between the content chunks: a relay that buffered the
    // response would deliver every delta at about the same time, at the end.
    assert.ok(firstDelta < total - 400, timings);
    assert.ok(spread >= 400, timings);
  });

  it('creates embeddings (base64 by default, and floats)', async () => {
    const input = ['hello world', 'the quick brown fox'];
    for (const encoding_format of [undefined, 'float']) {
      const body = { model: 'text-embedding-3-small', input };
      if (encoding_format) body.encoding_format = encoding_format;
      const result = await client.embeddings.create(body);
      assert.equal(result.object, 'list');
      assert.equal(result.data.length, 2);
      result.data.forEach((item, i) => {
        assert.equal(item.index, i);
        assert.ok(Array.isArray(item.embedding) && item.embedding.length > 0);
        const norm = Math.hypot(...item.embedding);
        assert.ok(Math.abs(norm - 1) < 1e-3, `unit vector expected, norm ${norm}`);
      });
      assert.ok(result.usage.prompt_tokens > 0);
    }
  });

  it('lists models', async () => {
    const ids = [];
    for await (const model of client.models.list()) {
      assert.equal(model.object, 'model');
      ids.push(model.id);
    }
    assert.ok(ids.length >= 1, 'at least one model');
    assert.ok(ids.every((id) => typeof id === 'string' && id.length > 0));
  });

  it('passes upstream 429 through as RateLimitError', async () => {
    const err = await expectApiError(
        client.chat.completions.create({ model: MODEL, messages: MESSAGES },
                                       { headers: { 'x-fake-status': '429' } }),
        OpenAI.RateLimitError, 429);
    assert.equal(typeof err.error?.message, 'string');
    assert.notEqual(err.type, 'gateway_error', 'the upstream body is passed through unchanged');
  });

  it('passes upstream 400 through as BadRequestError', async () => {
    const err = await expectApiError(
        client.chat.completions.create({ model: MODEL, messages: MESSAGES },
                                       { headers: { 'x-fake-status': '400' } }),
        OpenAI.BadRequestError, 400);
    assert.notEqual(err.type, 'gateway_error');
  });

  it('passes upstream 500 through as InternalServerError', async () => {
    const err = await expectApiError(
        client.chat.completions.create({ model: MODEL, messages: MESSAGES },
                                       { headers: { 'x-fake-status': '500' } }),
        OpenAI.InternalServerError, 500);
    assert.notEqual(err.type, 'gateway_error');
  });

  it('passes an error on a stream request through', async () => {
    await expectApiError(
        client.chat.completions.create({ model: MODEL, messages: MESSAGES, stream: true },
                                       { headers: { 'x-fake-status': '429' } }),
        OpenAI.RateLimitError, 429);
  });

  it('rejects a wrong arbiter key with AuthenticationError', async () => {
    const wrong = makeClient(stack, { gatewayKey: `arb-wrong-${randomUUID()}` });
    const err = await expectApiError(
        wrong.chat.completions.create({ model: MODEL, messages: MESSAGES }),
        OpenAI.AuthenticationError, 401);
    assert.equal(err.type, 'gateway_error');
    assert.equal(typeof err.error?.message, 'string');
    assert.ok(err.error.message.length > 0);
    assert.ok(err.message.includes(err.error.message), err.message);
    assert.notEqual(err.code, undefined, 'the gateway error carries a code');
    assert.ok(!err.message.includes(PROVIDER_KEY), 'the provider key is not echoed');
  });

  it('rejects a missing arbiter key with AuthenticationError', async () => {
    const anonymous = makeClient(stack, { gatewayKey: null });
    const err = await expectApiError(
        anonymous.chat.completions.create({ model: MODEL, messages: MESSAGES }),
        OpenAI.AuthenticationError, 401);
    assert.equal(err.type, 'gateway_error');
  });

  it('forwards the provider key and strips every helicone-* header', async () => {
    const echo = await client.get('/echo-check', {
      query: { probe: 'a b', n: 1 },
      headers: {
        'Helicone-Property-Team': 'e2e',
        'Helicone-User-Id': 'user-1',
        'Helicone-Session-Id': randomUUID(),
        'X-Custom-E2E': 'kept',
      },
    });
    assert.equal(echo.method, 'GET');
    assert.ok(echo.target.startsWith('/v1/echo-check?'), echo.target);
    assert.ok(/[?&]probe=a(\+|%20)b(&|$)/.test(echo.target), echo.target);
    assert.ok(/[?&]n=1(&|$)/.test(echo.target), echo.target);
    const headers = echoedHeaders(echo);
    assert.deepEqual(headers.get('authorization'), [`Bearer ${PROVIDER_KEY}`]);
    assert.deepEqual(headers.get('x-custom-e2e'), ['kept']);
    const leaked = [...headers.keys()].filter((name) => name.startsWith('helicone-'));
    assert.deepEqual(leaked, [], 'no helicone-* header reaches the upstream');
  });

  it('forwards a large request body unchanged', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 17);
    const response = await fetch(`${stack.baseURL}/echo-upload?x=1`, {
      method: 'POST',
      headers: {
        'Helicone-Auth': `Bearer ${stack.apiKey}`,
        Authorization: `Bearer ${PROVIDER_KEY}`,
        'Content-Type': 'application/octet-stream',
      },
      body,
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('helicone-id') ?? '', UUID);
    const echo = await response.json();
    assert.equal(echo.method, 'POST');
    assert.equal(echo.target, '/v1/echo-upload?x=1');
    assert.equal(echo.body_size, body.length);
    assert.equal(echo.body_sha256, createHash('sha256').update(body).digest('hex'));
  });

  it('serves concurrent requests', async () => {
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) =>
      client.chat.completions.create(
          { model: MODEL, messages: MESSAGES, stream: i % 2 === 1 },
          { headers: { 'x-fake-content': `reply number ${i}` } }).withResponse()));
    const ids = new Set();
    for (const [i, { data, response }] of results.entries()) {
      ids.add(response.headers.get('helicone-id'));
      const text = i % 2 === 1 ? (await collectStream(data)).text
                               : data.choices[0].message.content;
      assert.equal(text, `reply number ${i}`);
    }
    assert.equal(ids.size, 16, 'every request has its own id');
  });

  // Last on purpose: it stops the stack (after() then has nothing left to do).
  it('drains and exits 0 on SIGTERM', async () => {
    const { arbiter } = await stack.close();
    assert.deepEqual(arbiter, { code: 0, signal: null, forced: false });
  });
});

describe('openai SDK through arbiter with the upstream down', TEST_TIMEOUT, () => {
  let stack;

  before(async () => {
    stack = await startStack({ upstreamBaseURL: `http://127.0.0.1:${await closedPort()}` });
  });

  after(async () => {
    await stack?.close();
  });

  it('answers 502 with a gateway error', async () => {
    const err = await expectApiError(
        makeClient(stack).chat.completions.create({ model: MODEL, messages: MESSAGES }),
        OpenAI.InternalServerError, 502);
    assert.equal(err.type, 'gateway_error');
    assert.equal(typeof err.error?.message, 'string');
  });

  it('answers 502 to a stream request too', async () => {
    await expectApiError(
        makeClient(stack).chat.completions.create(
            { model: MODEL, messages: MESSAGES, stream: true }),
        OpenAI.InternalServerError, 502);
  });
});
