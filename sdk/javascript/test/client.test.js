// The twoapi JS client against a real gateway with simulated providers.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import TwoAPI, {
  APIConnectionError,
  APIError,
  APITimeoutError,
  AuthenticationError,
  BadRequestError,
  ERROR_CLASSES,
  InvalidRequestError,
  ModelNotFoundError,
  NotFoundError,
  TAXONOMY,
  TwoAPIError,
  UpstreamError,
} from '../index.js';
import { simulator, startGateway } from './gateway.js';

const PROMPT = 'Name three rivers of Europe, please.';
let gateway;
let sim;
let client;

before(async () => {
  gateway = await startGateway();
  sim = simulator(gateway.simulatorUrl);
  client = new TwoAPI({ apiKey: gateway.apiKey, baseURL: gateway.url, maxRetries: 0 });
});

after(async () => {
  await gateway?.stop();
});

describe('chat', () => {
  test('returns content, model, provider, usage, exact cost and request id', async () => {
    const response = await client.chat(PROMPT, { model: 'google/gemini-1.5-flash' });
    assert.ok(response.content.length > 0);
    assert.equal(String(response), response.content);
    assert.equal(response.model, 'google/gemini-1.5-flash');
    assert.equal(response.provider, 'google');
    assert.equal(response.finishReason, 'stop');
    assert.match(response.requestId, /^req_/);
    assert.ok(response.usage.inputTokens > 0 && response.usage.outputTokens > 0);
    assert.equal(response.usage.totalTokens, response.usage.inputTokens + response.usage.outputTokens);
    assert.match(response.cost, /^\d+\.\d+$/);
    assert.equal(response.attempts, 1);
  });

  test('sends messages, system and options through to the provider', async () => {
    await client.chat(null, {
      messages: [{ role: 'user', content: 'Hi' }], system: 'Be brief.', model: 'openai/gpt-4o-mini',
      temperature: 0.2, maxTokens: 5, extraBody: { seed: 7 },
    });
    const { body } = await sim.lastRequest();
    assert.deepEqual(body.messages[0], { role: 'system', content: 'Be brief.' });
    assert.equal(body.temperature, 0.2);
    assert.equal(body.max_tokens, 5);
    assert.equal(body.seed, 7);
  });

  test('routes auto by strategy', async () => {
    const response = await client.chat('Simple question', { routingStrategy: 'cost' });
    assert.equal(response.routingStrategy, 'cost');
    assert.ok(response.model.includes('/'));
  });

  test('falls back when the first model fails', async () => {
    await sim.fault({ provider: 'openai', model: 'gpt-4o-mini', mode: 'status', status: 500 });
    try {
      const response = await client.chat(PROMPT, {
        model: 'openai/gpt-4o-mini', fallbacks: ['anthropic/claude-3-5-haiku'],
      });
      assert.equal(response.provider, 'anthropic');
      assert.ok(response.attempts >= 2);
    } finally {
      await sim.clear();
    }
  });
});

describe('chatStream', () => {
  test('yields text chunks and exposes the final usage', async () => {
    const stream = client.chatStream(PROMPT, { model: 'anthropic/claude-3-5-sonnet' });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length > 1);
    assert.ok(chunks.every((c) => typeof c === 'string' && c.length > 0));
    assert.equal(stream.content, chunks.join(''));
    assert.equal(stream.finishReason, 'stop');
    assert.equal(stream.provider, 'anthropic');
    assert.match(stream.requestId, /^req_/);
    const plain = await client.chat(PROMPT, { model: 'anthropic/claude-3-5-sonnet' });
    assert.equal(stream.content, plain.content);
    assert.deepEqual(stream.usage, plain.usage);
  });

  test('open() first, then finalResponse()', async () => {
    const stream = await client.chatStream('Hello!', { model: 'openai/gpt-4o-mini' }).open();
    assert.equal(stream.provider, 'openai');
    const final = await stream.finalResponse();
    assert.ok(final.content.length > 0);
    assert.equal(final.model, 'openai/gpt-4o-mini');
    assert.ok(final.usage.outputTokens > 0);
  });

  test('breaking out early releases the stream', async () => {
    const stream = client.chatStream(PROMPT, { model: 'openai/gpt-4o-mini' });
    for await (const chunk of stream) {
      assert.ok(chunk);
      break;
    }
    const again = await client.chat('Hello!', { model: 'openai/gpt-4o-mini' });
    assert.ok(again.content);
  });

  test('an error before the first byte is thrown typed', async () => {
    await assert.rejects(async () => {
      for await (const _ of client.chatStream('Hi', { model: 'openai/gpt-9' })) { /* none */ }
    }, ModelNotFoundError);
  });
});

describe('errors', () => {
  test('typed classes with code, status, requestId and retryable', async () => {
    const badKey = new TwoAPI({ apiKey: '2api_wrong', baseURL: gateway.url });
    await assert.rejects(badKey.chat('Hi'), (error) => {
      assert.ok(error instanceof AuthenticationError && error instanceof APIError && error instanceof TwoAPIError);
      assert.equal(error.code, 'authentication_error');
      assert.equal(error.status, 401);
      assert.equal(error.retryable, false);
      return true;
    });
    await assert.rejects(client.chat('Hi', { model: 'openai/gpt-9' }), (error) => {
      assert.ok(error instanceof ModelNotFoundError && error instanceof NotFoundError);
      assert.equal(error.code, 'model_not_found');
      assert.equal(error.status, 404);
      assert.equal(error.param, 'model');
      assert.match(error.requestId, /^req_/);
      assert.equal(error.name, 'ModelNotFoundError');
      return true;
    });
    await assert.rejects(client.chat('Hi', { model: 'openai/gpt-4o-mini', temperature: 5 }), (error) => {
      assert.ok(error instanceof InvalidRequestError && error instanceof BadRequestError);
      assert.equal(error.param, 'temperature');
      return true;
    });
  });

  test('retryable errors are retried, others are not', async () => {
    await sim.fault({ provider: 'openai', model: 'gpt-4o-mini', mode: 'status', status: 500, count: 1 });
    const retrying = new TwoAPI({ apiKey: gateway.apiKey, baseURL: gateway.url, maxRetries: 2 });
    const response = await retrying.chat(PROMPT, { model: 'openai/gpt-4o-mini', maxAttempts: 1 });
    assert.ok(response.content);

    await sim.fault({ provider: 'openai', model: 'gpt-4o-mini', mode: 'status', status: 500, count: 1 });
    await assert.rejects(client.chat(PROMPT, { model: 'openai/gpt-4o-mini', maxAttempts: 1 }), (error) => {
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.code, 'upstream_error');
      assert.equal(error.retryable, true);
      return true;
    });
    await sim.clear();

    let calls = 0;
    const counting = new TwoAPI({
      apiKey: gateway.apiKey, baseURL: gateway.url, maxRetries: 3,
      fetch: (...args) => { calls += 1; return fetch(...args); },
    });
    await assert.rejects(counting.chat('Hi', { model: 'openai/gpt-9' }), ModelNotFoundError);
    assert.equal(calls, 1);
  });

  test('timeouts and unreachable gateways', async () => {
    await sim.fault({ provider: 'anthropic', mode: 'timeout', count: 1 });
    try {
      const impatient = new TwoAPI({ apiKey: gateway.apiKey, baseURL: gateway.url, timeout: 500, maxRetries: 0 });
      const started = Date.now();
      await assert.rejects(impatient.chat(PROMPT, { model: 'anthropic/claude-3-5-haiku' }), (error) => {
        assert.ok(error instanceof APITimeoutError && error instanceof APIConnectionError);
        assert.equal(error.retryable, true);
        return true;
      });
      assert.ok(Date.now() - started < 5000);
    } finally {
      await sim.clear();
    }
    const nowhere = new TwoAPI({ apiKey: gateway.apiKey, baseURL: 'http://127.0.0.1:9', maxRetries: 1 });
    await assert.rejects(nowhere.chat('Hi'), APIConnectionError);
  });

  test('the taxonomy has a class for every code', () => {
    assert.deepEqual(Object.keys(ERROR_CLASSES).sort(), Object.keys(TAXONOMY).sort());
  });
});

describe('configuration and other endpoints', () => {
  test('key and base URL from TWOAPI_API_KEY / TWOAPI_BASE_URL', async () => {
    const saved = { key: process.env.TWOAPI_API_KEY, url: process.env.TWOAPI_BASE_URL };
    process.env.TWOAPI_API_KEY = gateway.apiKey;
    process.env.TWOAPI_BASE_URL = `${gateway.url}/v1`;
    try {
      const fromEnv = new TwoAPI();
      assert.equal(fromEnv.baseURL, gateway.url);
      assert.ok((await fromEnv.chat('Hello!')).content);
      delete process.env.TWOAPI_API_KEY;
      assert.throws(() => new TwoAPI(), /TWOAPI_API_KEY/);
    } finally {
      for (const [name, value] of [['TWOAPI_API_KEY', saved.key], ['TWOAPI_BASE_URL', saved.url]]) {
        if (value === undefined) delete process.env[name]; else process.env[name] = value;
      }
    }
  });

  test('models lists provider/model ids', async () => {
    const models = await client.models();
    const ids = new Set(models.map((m) => m.id));
    for (const id of ['openai/gpt-4o-mini', 'anthropic/claude-3-5-sonnet', 'google/gemini-1.5-flash']) {
      assert.ok(ids.has(id), id);
    }
    assert.ok(models.every((m) => m.provider === m.id.split('/')[0]));
  });

  test('embeddings and usage: parsed when served, a typed not_found until then', async () => {
    const served = async (method, path) => (await fetch(gateway.url + path, { method })).status !== 404;
    if (await served('POST', '/v1/embeddings')) {
      const result = await client.embeddings(['one', 'two']);
      assert.equal(result.embeddings.length, 2);
    } else {
      await assert.rejects(client.embeddings('one'), (e) => e instanceof NotFoundError && e.code === 'not_found');
    }
    if (await served('GET', '/v1/usage')) {
      assert.equal(typeof (await client.usage()), 'object');
    } else {
      await assert.rejects(client.usage(), NotFoundError);
    }
  });
});
