// Type-checked (tsc --noEmit), never run: the twoapi package's types describe the
// README usage and the error classes.
import TwoAPI, { APIError, ModelNotFoundError, RateLimitError, TAXONOMY, type ChatResponse } from 'twoapi';

export async function readme(): Promise<void> {
  const client = new TwoAPI({ apiKey: '2api_your_key' });
  const response: ChatResponse = await client.chat('Hello!');
  const content: string | null = response.content;
  console.log(content, response.usage.inputTokens, response.cost?.length, response.requestId);
  for await (const chunk of client.chatStream('Tell me a story')) {
    const text: string = chunk;
    process.stdout.write(text);
  }
  const routed = await client.chat('Simple question', { routingStrategy: 'cost', fallbacks: ['openai/gpt-4o-mini'] });
  const stream = client.chatStream(null, { messages: [{ role: 'user', content: 'Hi' }], model: 'auto' });
  await stream.open();
  const final = await stream.finalResponse();
  const models = await client.models();
  console.log(routed.provider, final.usage.outputTokens, models.map((m) => m.id), stream.usage?.totalTokens);
  try {
    await client.chat('Hi', { model: 'openai/gpt-9', timeout: 5_000, maxTokens: 10 });
  } catch (error) {
    if (error instanceof ModelNotFoundError || error instanceof RateLimitError) {
      const code: string = error.code;
      const status: number = error.status;
      const retryable: boolean = error.retryable;
      console.log(code, status, retryable, error.requestId, error.retryAfter);
    } else if (error instanceof APIError) {
      console.log(error.param, TAXONOMY.upstream_error[2]);
    }
  }
}

// @ts-expect-error: routingStrategy is one of cost | latency | quality
await new TwoAPI({ apiKey: 'k' }).chat('x', { routingStrategy: 'cheapest' });
