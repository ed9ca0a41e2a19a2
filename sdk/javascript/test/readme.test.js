// The README's JavaScript snippet (the brief's, verbatim) runs as written against a
// local gateway: only the key is substituted; the base URL comes from TWOAPI_BASE_URL.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import TwoAPI from '../index.js';
import { REPO, startGateway } from './gateway.js';

let gateway;
let dir;

before(async () => {
  gateway = await startGateway();
  dir = mkdtempSync(join(tmpdir(), 'twoapi-readme-'));
});

after(async () => {
  await gateway?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function readmeSnippet(language) {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.split('\n## SDKs\n')[1].split('\n## ')[0];
  const match = section.match(new RegExp('```' + language + '\\n([\\s\\S]*?)```'));
  assert.ok(match, `README.md's SDKs section has no ${language} block`);
  return match[1];
}

test('the README JavaScript snippet runs as written', async () => {
  const snippet = readmeSnippet('javascript');
  assert.match(snippet, /^import TwoAPI from 'twoapi';/);
  // `import ... from 'twoapi'` resolves as after `npm install ./sdk/javascript` (a link).
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(join(REPO, 'sdk', 'javascript'), join(dir, 'node_modules', 'twoapi'), 'dir');
  writeFileSync(join(dir, 'readme.mjs'), snippet.replace('2api_your_key', gateway.apiKey));
  const env = { ...process.env, TWOAPI_BASE_URL: gateway.url };
  delete env.TWOAPI_API_KEY;
  const { stdout } = await promisify(execFile)(process.execPath, [join(dir, 'readme.mjs')], { cwd: dir, env });

  const client = new TwoAPI({ apiKey: gateway.apiKey, baseURL: gateway.url });
  const hello = await client.chat('Hello!');
  const story = await client.chatStream('Tell me a story').finalResponse();
  assert.equal(stdout, `${hello.content}\n${story.content}`);
});
