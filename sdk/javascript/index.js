// twoapi: the JavaScript client of the 2api LLM gateway. ESM, Node 20+, no
// dependencies beyond the platform's fetch. Types: index.d.ts.
//
//   import TwoAPI from 'twoapi';
//   const client = new TwoAPI({ apiKey: '2api_...' });   // or TWOAPI_API_KEY / TWOAPI_BASE_URL
//   const response = await client.chat('Hello!');
//   for await (const chunk of client.chatStream('Tell me a story')) process.stdout.write(chunk);

export const VERSION = '0.1.0';
export const DEFAULT_BASE_URL = 'http://127.0.0.1:8080';
const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_RETRIES = 2;
const RETRY_BASE_MS = 500;
const RETRY_CAP_MS = 8_000;
const RETRY_AFTER_CAP_MS = 60_000;

// code -> [HTTP status, OpenAI error type, retryable]; mirrors gateway/errors.py (a
// test keeps them equal).
export const TAXONOMY = Object.freeze({
  invalid_request: [400, 'invalid_request_error', false],
  invalid_json: [400, 'invalid_request_error', false],
  request_too_large: [413, 'invalid_request_error', false],
  request_timeout: [408, 'invalid_request_error', true],
  authentication_error: [401, 'authentication_error', false],
  permission_denied: [403, 'permission_error', false],
  not_found: [404, 'invalid_request_error', false],
  method_not_allowed: [405, 'invalid_request_error', false],
  model_not_found: [404, 'invalid_request_error', false],
  model_not_supported: [400, 'invalid_request_error', false],
  model_does_not_support_images: [400, 'invalid_request_error', false],
  context_length_exceeded: [400, 'invalid_request_error', false],
  rate_limited: [429, 'rate_limit_error', false],
  insufficient_balance: [402, 'insufficient_quota', false],
  upstream_rate_limited: [429, 'rate_limit_error', true],
  upstream_overloaded: [503, 'api_error', true],
  upstream_error: [502, 'api_error', true],
  upstream_auth_error: [502, 'api_error', false],
  upstream_timeout: [504, 'timeout_error', true],
  provider_unavailable: [503, 'api_error', false],
  all_candidates_failed: [502, 'api_error', false],
  content_filtered: [400, 'invalid_request_error', false],
  ledger_unavailable: [503, 'api_error', false],
  analytics_unavailable: [503, 'api_error', true],
  internal_error: [500, 'api_error', false],
});

// ---------------------------------------------------------------------------- errors

export class TwoAPIError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
    this.code = 'error';
    this.status = null;
    this.requestId = null;
    this.retryable = false;
  }
}

/** The gateway could not be reached, or the connection broke. Retryable. */
export class APIConnectionError extends TwoAPIError {
  constructor(message, options = {}) {
    super(message);
    this.code = 'connection_error';
    this.retryable = true;
    if (options.cause !== undefined) this.cause = options.cause;
  }
}

/** No answer within the client's timeout. Retryable. */
export class APITimeoutError extends APIConnectionError {
  constructor(message = 'The gateway did not answer in time.') {
    super(message);
    this.code = 'timeout';
  }
}

/** The gateway answered with an error (OpenAI's envelope with a 2api code). */
export class APIError extends TwoAPIError {
  constructor(message, { code, status, type = null, param = null, requestId = null, retryAfter = null,
    body = null, headers = {} } = {}) {
    super(message);
    this.code = code;
    this.status = status;
    this.type = type;
    this.param = param;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
    this.body = body;
    this.headers = headers;
    const kind = TAXONOMY[code];
    this.retryable = kind ? kind[2] : [429, 502, 503, 504].includes(status);
  }
}

export class BadRequestError extends APIError {}
export class InvalidRequestError extends BadRequestError {}
export class InvalidJSONError extends BadRequestError {}
export class ModelNotSupportedError extends BadRequestError {}
export class ModelDoesNotSupportImagesError extends BadRequestError {}
export class ContextLengthExceededError extends BadRequestError {}
export class ContentFilteredError extends BadRequestError {}
export class AuthenticationError extends APIError {}
export class InsufficientBalanceError extends APIError {}
export class PermissionDeniedError extends APIError {}
export class NotFoundError extends APIError {}
export class ModelNotFoundError extends NotFoundError {}
export class MethodNotAllowedError extends APIError {}
export class RequestTooLargeError extends APIError {}
export class RequestTimeoutError extends APIError {}
export class RateLimitError extends APIError {}
export class UpstreamRateLimitedError extends RateLimitError {}
export class InternalServerError extends APIError {}
export class UpstreamError extends InternalServerError {}
export class UpstreamOverloadedError extends UpstreamError {}
export class UpstreamAuthError extends UpstreamError {}
export class UpstreamTimeoutError extends UpstreamError {}
export class ProviderUnavailableError extends UpstreamError {}
export class AllCandidatesFailedError extends UpstreamError {}
export class LedgerUnavailableError extends InternalServerError {}
export class AnalyticsUnavailableError extends InternalServerError {}

export const ERROR_CLASSES = Object.freeze({
  invalid_request: InvalidRequestError,
  invalid_json: InvalidJSONError,
  request_too_large: RequestTooLargeError,
  request_timeout: RequestTimeoutError,
  authentication_error: AuthenticationError,
  permission_denied: PermissionDeniedError,
  not_found: NotFoundError,
  method_not_allowed: MethodNotAllowedError,
  model_not_found: ModelNotFoundError,
  model_not_supported: ModelNotSupportedError,
  model_does_not_support_images: ModelDoesNotSupportImagesError,
  context_length_exceeded: ContextLengthExceededError,
  rate_limited: RateLimitError,
  insufficient_balance: InsufficientBalanceError,
  upstream_rate_limited: UpstreamRateLimitedError,
  upstream_overloaded: UpstreamOverloadedError,
  upstream_error: UpstreamError,
  upstream_auth_error: UpstreamAuthError,
  upstream_timeout: UpstreamTimeoutError,
  provider_unavailable: ProviderUnavailableError,
  all_candidates_failed: AllCandidatesFailedError,
  content_filtered: ContentFilteredError,
  ledger_unavailable: LedgerUnavailableError,
  analytics_unavailable: AnalyticsUnavailableError,
  internal_error: InternalServerError,
});

const STATUS_CLASSES = {
  400: BadRequestError, 401: AuthenticationError, 402: InsufficientBalanceError, 403: PermissionDeniedError,
  404: NotFoundError, 405: MethodNotAllowedError, 408: RequestTimeoutError, 413: RequestTooLargeError, 429: RateLimitError,
};

function headersObject(headers) {
  const out = {};
  if (headers) for (const [name, value] of headers.entries()) out[name] = value;
  return out;
}

function retryAfterMs(value) {
  if (!value) return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : null;
}

/** The typed error for an error status and its body. */
export function errorFromResponse(status, body, headers = {}, text = '') {
  const error = body && typeof body === 'object' && body.error && typeof body.error === 'object' ? body.error : {};
  let code = typeof error.code === 'string' ? error.code : null;
  if (!code) code = Object.keys(TAXONOMY).find((c) => TAXONOMY[c][0] === status) ?? 'internal_error';
  const Class = ERROR_CLASSES[code] ?? STATUS_CLASSES[status] ?? (status >= 500 ? InternalServerError : APIError);
  const message = error.message || text || `HTTP ${status}`;
  return new Class(message, {
    code, status, type: error.type ?? null, param: error.param ?? null,
    requestId: headers['x-request-id'] ?? null, retryAfter: retryAfterMs(headers['retry-after']),
    body, headers,
  });
}

// ---------------------------------------------------------------------------- responses

function usageOf(usage) {
  if (!usage) return null;
  const inputTokens = usage.prompt_tokens ?? 0;
  const outputTokens = usage.completion_tokens ?? 0;
  return {
    inputTokens, outputTokens, totalTokens: inputTokens + outputTokens,
    cachedTokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
  };
}

function metaOf(headers) {
  const attempts = headers['x-2api-attempts'];
  return {
    requestId: headers['x-request-id'] ?? null,
    provider: headers['x-2api-provider'] ?? null,
    model: headers['x-2api-model'] ?? null,
    attempts: attempts ? Number(attempts) : null,
    cost: headers['x-2api-cost'] ?? null,
    routingStrategy: headers['x-2api-routing-strategy'] ?? null,
  };
}

function providerOf(model) {
  return model && model.includes('/') ? model.split('/')[0] : null;
}

function toolCallOf(call) {
  return { id: call.id ?? '', name: call.function?.name ?? '', arguments: call.function?.arguments ?? '' };
}

function chatResponse(body, meta) {
  const choice = body.choices?.[0] ?? {};
  const message = choice.message ?? {};
  const model = body.model ?? meta.model ?? '';
  return {
    content: message.content ?? null,
    model,
    provider: meta.provider ?? providerOf(model),
    usage: usageOf(body.usage) ?? { inputTokens: 0, outputTokens: 0, totalTokens: 0, cachedTokens: 0 },
    cost: meta.cost,
    requestId: meta.requestId,
    finishReason: choice.finish_reason ?? null,
    toolCalls: (message.tool_calls ?? []).map(toolCallOf),
    attempts: meta.attempts,
    routingStrategy: meta.routingStrategy,
    id: body.id ?? null,
    raw: body,
    toString() { return this.content ?? ''; },
  };
}

// ---------------------------------------------------------------------------- requests

function chatBody(prompt, options, stream) {
  const { messages, model, system, routingStrategy, fallbacks, maxAttempts, routingTimeoutMs, maxCost, tools,
    toolChoice, temperature, maxTokens, extraBody } = options;
  if (prompt != null && messages != null) throw new TypeError('pass a prompt or messages, not both');
  let turns;
  if (typeof prompt === 'string') turns = [{ role: 'user', content: prompt }];
  else if (Array.isArray(prompt)) turns = [...prompt];
  else if (Array.isArray(messages)) turns = [...messages];
  else throw new TypeError('chat() needs a prompt string or messages');
  if (system != null) turns.unshift({ role: 'system', content: system });
  const body = { model: model ?? 'auto', messages: turns };
  const routing = {};
  if (routingStrategy != null) routing.strategy = routingStrategy;
  if (fallbacks?.length) routing.fallbacks = [...fallbacks];
  if (maxAttempts != null) routing.max_attempts = maxAttempts;
  if (routingTimeoutMs != null) routing.timeout_ms = routingTimeoutMs;
  if (maxCost != null) routing.max_cost = String(maxCost);
  if (Object.keys(routing).length) body.routing = routing;
  if (tools != null) body.tools = tools;
  if (toolChoice != null) body.tool_choice = toolChoice;
  if (temperature != null) body.temperature = temperature;
  if (maxTokens != null) body.max_tokens = maxTokens;
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return Object.assign(body, extraBody ?? {});
}

function env(name) {
  return typeof process !== 'undefined' && process.env ? process.env[name] : undefined;
}

function normalizeBaseURL(url) {
  let out = url.replace(/\/+$/, '');
  if (out.endsWith('/v1')) out = out.slice(0, -3);
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function backoffMs(retry, error) {
  if (error.retryAfter != null && error.retryAfter <= RETRY_AFTER_CAP_MS) return error.retryAfter;
  return Math.random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (retry - 1));
}

// ---------------------------------------------------------------------------- the client

export class TwoAPI {
  /**
   * @param {object} [options]
   * @param {string} [options.apiKey]  default: TWOAPI_API_KEY
   * @param {string} [options.baseURL] the gateway's root, with or without /v1; default: TWOAPI_BASE_URL or http://127.0.0.1:8080
   * @param {number} [options.timeout] milliseconds per request (until the first byte, for streams); default 120000
   * @param {number} [options.maxRetries] retries of retryable errors, connection failures and timeouts; default 2
   */
  constructor({ apiKey, baseURL, timeout = DEFAULT_TIMEOUT_MS, maxRetries = DEFAULT_MAX_RETRIES,
    defaultHeaders = {}, fetch: fetchImpl } = {}) {
    const key = apiKey ?? env('TWOAPI_API_KEY');
    if (!key) throw new TwoAPIError('No API key: pass { apiKey } or set TWOAPI_API_KEY.');
    this.apiKey = key;
    this.baseURL = normalizeBaseURL(baseURL ?? env('TWOAPI_BASE_URL') ?? DEFAULT_BASE_URL);
    this.timeout = timeout;
    if (!(maxRetries >= 0)) throw new RangeError('maxRetries must be >= 0');
    this.maxRetries = maxRetries;
    this.defaultHeaders = defaultHeaders;
    this._fetch = fetchImpl ?? globalThis.fetch;
    if (typeof this._fetch !== 'function') throw new TwoAPIError('No fetch: Node 20+ or pass { fetch }.');
  }

  /** One HTTP exchange with retries. Resolves with [response, release] where
   * release() clears the timeout (called once the body has been read). */
  async _request(method, path, { body, query, timeout, signal, stream = false } = {}) {
    let url = this.baseURL + path;
    if (query) {
      const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v != null));
      if ([...params].length) url += `?${params}`;
    }
    const headers = {
      authorization: `Bearer ${this.apiKey}`,
      accept: stream ? 'text/event-stream' : 'application/json',
      'user-agent': `twoapi-js/${VERSION}`,
      ...this.defaultHeaders,
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const timeoutMs = timeout ?? this.timeout;
    for (let retry = 1; ; retry += 1) {
      const controller = new AbortController();
      let timedOut = false;
      const timer = timeoutMs ? setTimeout(() => { timedOut = true; controller.abort(); }, timeoutMs) : null;
      const onAbort = () => controller.abort(signal.reason);
      if (signal) {
        if (signal.aborted) controller.abort(signal.reason);
        else signal.addEventListener('abort', onAbort, { once: true });
      }
      const release = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      let failure;
      try {
        const response = await this._fetch(url, { method, headers, body: payload, signal: controller.signal });
        if (response.ok) {
          if (stream) release();
          return [response, release, controller];
        }
        const text = await response.text();
        release();
        let parsed = null;
        try { parsed = JSON.parse(text); } catch { /* not JSON */ }
        failure = errorFromResponse(response.status, parsed, headersObject(response.headers), text.slice(0, 500));
      } catch (error) {
        release();
        if (signal?.aborted) throw signal.reason ?? error;
        failure = timedOut ? new APITimeoutError()
          : new APIConnectionError(`Could not reach the gateway: ${error?.cause?.code ?? error?.message ?? error}`, { cause: error });
      }
      if (!(retry <= this.maxRetries && failure.retryable)) throw failure;
      await sleep(backoffMs(retry, failure));
    }
  }

  async _json(method, path, options) {
    const [response, release] = await this._request(method, path, options);
    try {
      const text = await response.text();
      try {
        return [JSON.parse(text), headersObject(response.headers)];
      } catch {
        throw new APIError(`The gateway answered with a body that is not JSON: ${text.slice(0, 200)}`, {
          code: 'invalid_response', status: response.status, requestId: response.headers.get('x-request-id'),
        });
      }
    } catch (error) {
      if (error instanceof TwoAPIError) throw error;
      throw new APIConnectionError(`The response broke off: ${error?.message ?? error}`, { cause: error });
    } finally {
      release();
    }
  }

  /**
   * One chat completion. `prompt` is a user message (or an array of messages).
   * Without `model` the gateway picks one (`auto`, by `routingStrategy`).
   */
  async chat(prompt, options = {}) {
    const body = chatBody(prompt, options, false);
    const [json, headers] = await this._json('POST', '/v1/chat/completions',
      { body, timeout: options.timeout, signal: options.signal });
    return chatResponse(json, metaOf(headers));
  }

  /**
   * A streamed chat completion: `for await (const chunk of client.chatStream(...))`
   * yields text chunks; afterwards `.usage`, `.content`, `.finishReason`, `.toolCalls`.
   */
  chatStream(prompt, options = {}) {
    return new ChatStream(this, chatBody(prompt, options, true), options);
  }

  /** Embeddings of a string or an array of strings (`POST /v1/embeddings`). */
  async embeddings(input, { model = 'openai/text-embedding-3-small', dimensions, extraBody, timeout, signal } = {}) {
    const body = { model, input, ...(dimensions != null ? { dimensions } : {}), ...(extraBody ?? {}) };
    const [json, headers] = await this._json('POST', '/v1/embeddings', { body, timeout, signal });
    const meta = metaOf(headers);
    const data = [...(json.data ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    return {
      embeddings: data.map((item) => item.embedding), model: json.model ?? meta.model,
      usage: usageOf(json.usage), cost: meta.cost, requestId: meta.requestId, provider: meta.provider, raw: json,
    };
  }

  /** The models the gateway can route to (`provider/model` ids). */
  async models({ timeout, signal } = {}) {
    const [json] = await this._json('GET', '/v1/models', { timeout, signal });
    return (json.data ?? []).map((m) => ({ id: m.id, provider: m.owned_by ?? providerOf(m.id), raw: m }));
  }

  /** The calling tenant's usage and balance (`GET /v1/usage`), as JSON. */
  async usage({ start, end, groupBy, timeout, signal } = {}) {
    const [json] = await this._json('GET', '/v1/usage', { query: { start, end, group_by: groupBy }, timeout, signal });
    return json;
  }
}

export class ChatStream {
  constructor(client, body, options) {
    this._client = client;
    this._body = body;
    this._options = options;
    this._response = null;
    this._controller = null;
    this._parts = [];
    this._calls = new Map();
    this.usage = null;
    this.finishReason = null;
    this.model = null;
    this.requestId = null;
    this.provider = null;
    this.routingStrategy = null;
    this.attempts = null;
    this.id = null;
    this.done = false;
  }

  /** Open the stream (errors before the first byte are thrown here). */
  async open() {
    if (!this._response) {
      const [response, , controller] = await this._client._request('POST', '/v1/chat/completions', {
        body: this._body, timeout: this._options.timeout, signal: this._options.signal, stream: true,
      });
      this._response = response;
      this._controller = controller;
      const meta = metaOf(headersObject(response.headers));
      Object.assign(this, {
        requestId: meta.requestId, provider: meta.provider, model: meta.model,
        routingStrategy: meta.routingStrategy, attempts: meta.attempts,
      });
    }
    return this;
  }

  get content() { return this._parts.join(''); }

  get toolCalls() {
    return [...this._calls.entries()].sort(([a], [b]) => a - b).map(([, call]) => ({ ...call }));
  }

  /** Stop reading and release the connection. */
  abort() { this._controller?.abort(); }

  _feed(data) {
    if (data === '[DONE]') { this.done = true; return null; }
    const event = JSON.parse(data);
    if (event.error && !event.choices) {
      const code = event.error.code ?? 'upstream_error';
      throw errorFromResponse(TAXONOMY[code]?.[0] ?? 502, event, { 'x-request-id': this.requestId });
    }
    this.id = event.id ?? this.id;
    this.model = event.model ?? this.model;
    if (event.usage) this.usage = usageOf(event.usage);
    let text = '';
    for (const choice of event.choices ?? []) {
      const delta = choice.delta ?? {};
      if (delta.content) text += delta.content;
      for (const call of delta.tool_calls ?? []) {
        const index = call.index ?? 0;
        const slot = this._calls.get(index) ?? { id: '', name: '', arguments: '' };
        slot.id = call.id || slot.id;
        slot.name = call.function?.name || slot.name;
        slot.arguments += call.function?.arguments ?? '';
        this._calls.set(index, slot);
      }
      if (choice.finish_reason) this.finishReason = choice.finish_reason;
    }
    if (text) this._parts.push(text);
    return text || null;
  }

  async *[Symbol.asyncIterator]() {
    await this.open();
    const decoder = new TextDecoder();
    let buffer = '';
    const reader = this._response.body.getReader();
    try {
      while (!this.done) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (error) {
          if (this._options.signal?.aborted) throw this._options.signal.reason ?? error;
          throw new APIConnectionError(`The stream broke off: ${error?.message ?? error}`, { cause: error });
        }
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, '\n');
        let end;
        while (!this.done && (end = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
          if (!data.length) continue;
          const text = this._feed(data.join('\n'));
          if (text) yield text;
        }
      }
    } finally {
      if (!this.done) this._controller?.abort();
      reader.releaseLock?.();
    }
  }

  /** Read the rest of the stream; resolves with the whole answer. */
  async finalResponse() {
    for await (const _ of this) { /* drain */ }
    const model = this.model ?? '';
    return {
      content: this.content, model, provider: this.provider ?? providerOf(model),
      usage: this.usage ?? { inputTokens: 0, outputTokens: 0, totalTokens: 0, cachedTokens: 0 },
      cost: null, requestId: this.requestId, finishReason: this.finishReason, toolCalls: this.toolCalls,
      attempts: this.attempts, routingStrategy: this.routingStrategy, id: this.id, raw: null,
      toString() { return this.content ?? ''; },
    };
  }
}

export default TwoAPI;
