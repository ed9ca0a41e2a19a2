// Types of the twoapi JavaScript client (index.js).

export declare const VERSION: string;
export declare const DEFAULT_BASE_URL: string;

export type ErrorCode =
  | 'invalid_request' | 'invalid_json' | 'request_too_large' | 'request_timeout' | 'authentication_error' | 'permission_denied'
  | 'not_found' | 'method_not_allowed' | 'model_not_found' | 'model_not_supported' | 'model_does_not_support_images'
  | 'context_length_exceeded' | 'rate_limited' | 'insufficient_balance' | 'upstream_rate_limited'
  | 'upstream_overloaded' | 'upstream_error' | 'upstream_auth_error' | 'upstream_timeout'
  | 'provider_unavailable' | 'all_candidates_failed' | 'content_filtered' | 'ledger_unavailable'
  | 'analytics_unavailable' | 'internal_error';

/** code -> [HTTP status, OpenAI error type, retryable] */
export declare const TAXONOMY: Readonly<Record<ErrorCode, readonly [number, string, boolean]>>;

export type RoutingStrategy = 'cost' | 'latency' | 'quality';

export interface Message {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string | Array<Record<string, unknown>> | null;
  name?: string;
  tool_call_id?: string;
  tool_calls?: Array<Record<string, unknown>>;
  [key: string]: unknown;
}

export interface ClientOptions {
  /** Default: process.env.TWOAPI_API_KEY */
  apiKey?: string;
  /** The gateway's root, with or without /v1. Default: TWOAPI_BASE_URL or http://127.0.0.1:8080 */
  baseURL?: string;
  /** Milliseconds per request (for streams: until the response starts). Default 120000. */
  timeout?: number;
  /** Retries of retryable errors, connection failures and timeouts. Default 2. */
  maxRetries?: number;
  defaultHeaders?: Record<string, string>;
  fetch?: typeof fetch;
}

export interface RequestOptions {
  timeout?: number;
  signal?: AbortSignal;
}

export interface ChatOptions extends RequestOptions {
  messages?: Message[];
  /** `provider/model`, an alias, or 'auto' (the default) */
  model?: string;
  system?: string;
  routingStrategy?: RoutingStrategy;
  fallbacks?: string[];
  maxAttempts?: number;
  routingTimeoutMs?: number;
  /** USD, for the quality strategy */
  maxCost?: string | number;
  tools?: Array<Record<string, unknown>>;
  toolChoice?: unknown;
  temperature?: number;
  maxTokens?: number;
  /** Any other OpenAI chat field, merged into the request body */
  extraBody?: Record<string, unknown>;
}

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  /** the part of inputTokens served from the provider's prompt cache */
  cachedTokens: number;
}

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text, as the model wrote it */
  arguments: string;
}

export interface ChatResponse {
  content: string | null;
  model: string;
  provider: string | null;
  usage: Usage;
  /** Exact USD as a decimal string (x-2api-cost); null for streams. */
  cost: string | null;
  requestId: string | null;
  finishReason: string | null;
  toolCalls: ToolCall[];
  attempts: number | null;
  routingStrategy: string | null;
  id: string | null;
  raw: Record<string, unknown> | null;
  toString(): string;
}

export interface Model {
  id: string;
  provider: string;
  raw: Record<string, unknown>;
}

export interface EmbeddingsResponse {
  embeddings: number[][];
  model: string | null;
  usage: Usage | null;
  cost: string | null;
  requestId: string | null;
  provider: string | null;
  raw: Record<string, unknown>;
}

export declare class ChatStream implements AsyncIterable<string> {
  readonly content: string;
  readonly toolCalls: ToolCall[];
  usage: Usage | null;
  finishReason: string | null;
  model: string | null;
  requestId: string | null;
  provider: string | null;
  routingStrategy: string | null;
  attempts: number | null;
  id: string | null;
  done: boolean;
  /** Open the stream; errors before the first byte are thrown here. */
  open(): Promise<this>;
  /** Stop reading and release the connection. */
  abort(): void;
  /** Read the rest; the whole answer. */
  finalResponse(): Promise<ChatResponse>;
  [Symbol.asyncIterator](): AsyncIterator<string>;
}

export declare class TwoAPI {
  constructor(options?: ClientOptions);
  readonly apiKey: string;
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  chat(prompt: string | Message[], options?: ChatOptions): Promise<ChatResponse>;
  chat(prompt: null | undefined, options: ChatOptions & { messages: Message[] }): Promise<ChatResponse>;
  chatStream(prompt: string | Message[], options?: ChatOptions): ChatStream;
  chatStream(prompt: null | undefined, options: ChatOptions & { messages: Message[] }): ChatStream;
  embeddings(
    input: string | string[],
    options?: RequestOptions & { model?: string; dimensions?: number; extraBody?: Record<string, unknown> },
  ): Promise<EmbeddingsResponse>;
  models(options?: RequestOptions): Promise<Model[]>;
  usage(options?: RequestOptions & { start?: string; end?: string; groupBy?: 'day' | 'model' | 'key' }): Promise<Record<string, unknown>>;
}
export default TwoAPI;

export declare class TwoAPIError extends Error {
  code: string;
  status: number | null;
  requestId: string | null;
  retryable: boolean;
}
export declare class APIConnectionError extends TwoAPIError {}
export declare class APITimeoutError extends APIConnectionError {}
export declare class APIError extends TwoAPIError {
  status: number;
  type: string | null;
  param: string | null;
  /** milliseconds, from retry-after */
  retryAfter: number | null;
  body: unknown;
  headers: Record<string, string>;
}
export declare class BadRequestError extends APIError {}
export declare class InvalidRequestError extends BadRequestError {}
export declare class InvalidJSONError extends BadRequestError {}
export declare class ModelNotSupportedError extends BadRequestError {}
export declare class ModelDoesNotSupportImagesError extends BadRequestError {}
export declare class ContextLengthExceededError extends BadRequestError {}
export declare class ContentFilteredError extends BadRequestError {}
export declare class AuthenticationError extends APIError {}
export declare class InsufficientBalanceError extends APIError {}
export declare class PermissionDeniedError extends APIError {}
export declare class NotFoundError extends APIError {}
export declare class ModelNotFoundError extends NotFoundError {}
export declare class MethodNotAllowedError extends APIError {}
export declare class RequestTooLargeError extends APIError {}
export declare class RequestTimeoutError extends APIError {}
export declare class RateLimitError extends APIError {}
export declare class UpstreamRateLimitedError extends RateLimitError {}
export declare class InternalServerError extends APIError {}
export declare class UpstreamError extends InternalServerError {}
export declare class UpstreamOverloadedError extends UpstreamError {}
export declare class UpstreamAuthError extends UpstreamError {}
export declare class UpstreamTimeoutError extends UpstreamError {}
export declare class ProviderUnavailableError extends UpstreamError {}
export declare class AllCandidatesFailedError extends UpstreamError {}
export declare class LedgerUnavailableError extends InternalServerError {}
export declare class AnalyticsUnavailableError extends InternalServerError {}

export declare const ERROR_CLASSES: Readonly<Record<ErrorCode, new (...args: any[]) => APIError>>;
export declare function errorFromResponse(
  status: number, body: unknown, headers?: Record<string, string>, text?: string,
): APIError;
