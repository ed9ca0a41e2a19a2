// The official `openai` Node SDK (and `@anthropic-ai/sdk`) work unchanged against the
// gateway: chat, streaming, models, tools (as they reach the provider), errors; the
// twoapi package's types check. Gateway + simulator from sdk/javascript/test/gateway.js.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

import { simulator, startGateway } from '../../../sdk/javascript/test/gateway.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const MODELS = ['openai/gpt-4o-mini', 'anthropic/claude-3-5-sonnet', 'google/gemini-1.5-flash'];
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name three rivers of Europe, please.' },
];
let gateway;
let sim;
let openai;

before(async () => {
  gateway = await startGateway();
  sim = simulator(gateway.simulatorUrl);
  openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: gateway.apiKey, maxRetries: 0 });
});

after(async () => {
  await gateway?.stop();
});

describe('openai Node SDK', () => {
  for (const model of MODELS) {
    test(`chat.completions.create reaches ${model}`, async () => {
      const { data, response } = await openai.chat.completions.create({ model, messages: MESSAGES }).withResponse();
      assert.equal(data.object, 'chat.completion');
      assert.equal(data.model, model);
      assert.ok(data.choices[0].message.content.length > 0);
      assert.equal(data.choices[0].finish_reason, 'stop');
      assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
      assert.match(response.headers.get('x-request-id'), /^req_/);
      assert.equal(response.headers.get('x-2api-provider'), model.split('/')[0]);
    });

    test(`streaming from ${model} gives the same text and the usage chunk`, async () => {
      const plain = await openai.chat.completions.create({ model, messages: MESSAGES });
      const stream = await openai.chat.completions.create({
        model, messages: MESSAGES, stream: true, stream_options: { include_usage: true },
      });
      let text = '';
      let usage = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (chunk.usage) usage = chunk.usage;
      }
      assert.equal(text, plain.choices[0].message.content);
      assert.deepEqual(
        [usage.prompt_tokens, usage.completion_tokens],
        [plain.usage.prompt_tokens, plain.usage.completion_tokens],
      );
    });
  }

  test('the stream helper accumulates the final completion', async () => {
    const runner = openai.chat.completions.stream({ model: 'google/gemini-1.5-flash', messages: MESSAGES });
    const final = await runner.finalChatCompletion();
    assert.ok(final.choices[0].message.content.length > 0);
  });

  test('models.list', async () => {
    const ids = [];
    for await (const model of openai.models.list()) ids.push(model.id);
    for (const id of MODELS) assert.ok(ids.includes(id), id);
  });

  test('tools reach the provider in its own format', async () => {
    const tools = [{
      type: 'function',
      function: {
        name: 'get_weather', description: 'Weather for a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    }];
    await openai.chat.completions.create({
      model: 'anthropic/claude-3-5-haiku', tools, tool_choice: 'auto',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
    });
    const sent = await sim.lastRequest();
    assert.equal(sent.provider, 'anthropic');
    assert.equal(sent.body.tools[0].name, 'get_weather');
    assert.deepEqual(sent.body.tools[0].input_schema, tools[0].function.parameters);
  });

  test('errors are the SDK\'s typed errors with the gateway\'s code', async () => {
    await assert.rejects(openai.chat.completions.create({ model: 'openai/gpt-9', messages: MESSAGES }), (error) => {
      assert.ok(error instanceof OpenAI.NotFoundError);
      assert.equal(error.code, 'model_not_found');
      assert.equal(error.param, 'model');
      return true;
    });
    const wrong = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: '2api_wrong', maxRetries: 0 });
    await assert.rejects(wrong.models.list(), OpenAI.AuthenticationError);
  });

  test('embeddings: served, or a typed 404 until the gateway has them', async () => {
    const served = (await fetch(`${gateway.url}/v1/embeddings`, { method: 'POST' })).status !== 404;
    const call = openai.embeddings.create({ model: 'openai/text-embedding-3-small', input: ['a', 'b'] });
    if (served) {
      const result = await call;
      assert.equal(result.data.length, 2);
    } else {
      await assert.rejects(call, OpenAI.NotFoundError);
    }
  });
});

describe('@anthropic-ai/sdk against POST /v1/messages', () => {
  test('messages.create reaches an OpenAI model, plain and streaming', async () => {
    const anthropic = new Anthropic({ baseURL: gateway.url, apiKey: gateway.apiKey, maxRetries: 0 });
    const message = await anthropic.messages.create({
      model: 'openai/gpt-4o-mini', max_tokens: 256, messages: [{ role: 'user', content: 'Hello!' }],
    });
    assert.equal(message.model, 'openai/gpt-4o-mini');
    assert.equal(message.content[0].type, 'text');
    const stream = anthropic.messages.stream({
      model: 'openai/gpt-4o-mini', max_tokens: 256, messages: [{ role: 'user', content: 'Hello!' }],
    });
    const final = await stream.finalMessage();
    assert.equal(final.content[0].text, message.content[0].text);
    assert.equal(final.usage.output_tokens, message.usage.output_tokens);
  });
});

describe('twoapi types', () => {
  test('typecheck.ts compiles against index.d.ts (tsc --noEmit)', () => {
    execFileSync(join(HERE, 'node_modules', '.bin', 'tsc'), ['-p', join(HERE, 'tsconfig.json')], { stdio: 'pipe' });
  });
});
