"""What the simulator must report, computed from its documented rules."""

from __future__ import annotations

from simulator.text import MESSAGE_OVERHEAD, REPLY_PRIMING, count_tokens, reply_pieces


def input_tokens(*message_texts: str) -> int:
    """Input tokens of a conversation whose messages (system prompt included) have these texts."""
    return REPLY_PRIMING + sum(MESSAGE_OVERHEAD + count_tokens(text) for text in message_texts)


def reply_text(model: str, prompt: str, max_tokens: int | None = None) -> str:
    pieces = reply_pieces(model, prompt)
    return "".join(pieces if max_tokens is None else pieces[:max_tokens])


def output_tokens(model: str, prompt: str, max_tokens: int | None = None) -> int:
    return count_tokens(reply_text(model, prompt, max_tokens))
