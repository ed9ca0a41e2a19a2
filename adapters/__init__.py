"""Provider adapters: the unified (OpenAI-shaped) request to each provider's wire format and back."""
