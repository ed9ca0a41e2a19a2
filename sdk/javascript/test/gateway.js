// A real 2api gateway with simulated providers, for the tests: `python -m gateway.cli
// serve --simulate` from the repository (TWOAPI_PYTHON names the interpreter, default
// python3: the CI's virtualenv). Or an already running one: TWOAPI_TEST_BASE_URL,
// TWOAPI_TEST_API_KEY and TWOAPI_TEST_SIMULATOR_URL.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const DEMO_KEY = '2api_js_test_demo_key_0123456789abcdefghijklmnop';

export function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.unref();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

async function waitHealthy(url, child, output, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      throw new Error(`the gateway exited with ${child.exitCode}:\n${output.join('')}`);
    }
    try {
      const response = await fetch(`${url}/health`);
      if (response.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the gateway at ${url} did not become healthy:\n${output.join('')}`);
}

/** Start a gateway; resolves with { url, apiKey, simulatorUrl, stop() }. */
export async function startGateway() {
  if (process.env.TWOAPI_TEST_BASE_URL) {
    return {
      url: process.env.TWOAPI_TEST_BASE_URL,
      apiKey: process.env.TWOAPI_TEST_API_KEY,
      simulatorUrl: process.env.TWOAPI_TEST_SIMULATOR_URL,
      stop: async () => {},
    };
  }
  const [port, simPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'twoapi-js-'));
  const python = process.env.TWOAPI_PYTHON || 'python3';
  const output = [];
  const child = spawn(python, ['-m', 'gateway.cli', 'serve', '--simulate', '--port', String(port)], {
    cwd: REPO,
    env: {
      ...process.env,
      TWOAPI_DATA_DIR: dataDir,
      TWOAPI_DEMO_KEY: DEMO_KEY,
      TWOAPI_SIM_PORT: String(simPort),
      TWOAPI_LOG_LEVEL: 'warning',
      DATABASE_URL: '',
      REDIS_URL: '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => output.push(String(d)));
  child.stderr.on('data', (d) => output.push(String(d)));
  const spawned = new Promise((done, fail) => {
    child.once('spawn', done);
    child.once('error', (error) => fail(new Error(`could not start ${python}: ${error.message}`)));
  });
  await spawned;
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(url, child, output);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    url,
    apiKey: DEMO_KEY,
    simulatorUrl: `http://127.0.0.1:${simPort}`,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The simulator's control API. */
export function simulator(url) {
  const call = async (method, path, body) => {
    const response = await fetch(url + path, {
      method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return response.json();
  };
  return {
    fault: (fault) => call('POST', '/_sim/faults', fault),
    clear: () => call('DELETE', '/_sim/faults'),
    lastRequest: async () => (await call('GET', '/_sim/requests?last=1')).requests.at(-1),
  };
}
