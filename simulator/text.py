"""Deterministic text and token counting: what the simulated models "say" and "cost".

Token rule (`count_tokens`): a token is a run of word characters (`\\w+`) or a single
other non-space character, so `"Hello, world!"` is 4 tokens. It is no real tokenizer,
but it is stable, cheap and easy to compute in a test.

Input rule (`MESSAGE_OVERHEAD`, `REPLY_PRIMING`): a request's input tokens are
`REPLY_PRIMING` + for every message, the system prompt counting as one message,
`MESSAGE_OVERHEAD` + the tokens of its text parts. Parts that are not text (images,
tool calls, tool results, anything a later protocol adds) count as their compact JSON
size / 4, rounded up; so do tool definitions. So the same text conversation costs the
same input tokens on every simulated provider.

Reply rule (`reply_pieces`): the reply is derived from (model, last user text) alone:
SHA-256 of both picks a length of 20..30 words from a fixed vocabulary, then a final
".". Each piece ("Word", " word", ..., ".") is exactly one token, and a stream sends
one piece per chunk, so split points and usage are the same for plain and streaming
requests. `make_reply` applies an output-token limit (keeps the first N pieces;
finish "length") and stop sequences (cuts before the first occurrence; finish
"stop_sequence"); output tokens are always `count_tokens` of the text produced.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

MESSAGE_OVERHEAD = 4  # tokens every message costs besides its text (role, separators)
REPLY_PRIMING = 3  # tokens every request costs for priming the assistant's reply
MIN_REPLY_WORDS = 20
MAX_REPLY_WORDS = 30

_TOKEN = re.compile(r"\w+|[^\w\s]")

# 256 plain lowercase words: one digest byte picks one word.
_WORDS = """
    able acid aged also area army away baby back ball band bank base bath bear beat
    been beer bell belt best bill bird blow blue boat body bold bond bone book boom
    born boss both bowl bulk burn bush busy cafe cage cake call calm came camp card
    care case cash cast cell chat chip city club coal coat code cold come cook cool
    cope copy core cost crew crop dark data date dawn days deck deal dear debt deep
    deny desk diet disk dock does done door dose down draw drew drop drum dual duke
    dust duty each earn ease east easy edge else even ever exam exit face fact fail
    fair fall farm fast fate fear feed feel feet fell felt file fill film find fine
    fire firm fish five flat flow food foot ford form fort four free from fuel full
    fund gain game gate gave gear gene gift girl give glad goal goes gold golf gone
    good gray grew grey grow gulf hair half hall hand hang hard hawk harp have head
    hear heat held herb help here hero high hill hire hold hole holy home hope host
    hour huge hung hunt husk idea inch into iron item jack jane jean john join jump
    jury just keen keep kent kept kick kiln kind king knee knew know lack lady laid
    lake land lane last late lead left less life lift like line link list live load
    loan lock logo long look lord lose loss lost love luck made mail main make male
    """
VOCABULARY: tuple[str, ...] = tuple(_WORDS.split())
assert len(VOCABULARY) == 256


_CACHED_TEXT_MAX = 65_536  # longer texts are counted afresh, so the memo stays small


@lru_cache(maxsize=4096)
def _count_memo(text: str) -> int:
    return len(_TOKEN.findall(text))


def count_tokens(text: str) -> int:
    """Tokens of a text under the simulator's rule (see the module docstring)."""
    if not text:
        return 0
    # Benchmarks and retries send the same prompts over and over: remember their counts.
    return _count_memo(text) if len(text) <= _CACHED_TEXT_MAX else len(_TOKEN.findall(text))


def part_text(part: Any) -> str | None:
    """The text of one content part of any provider, or None if it is not a text part.

    OpenAI and Anthropic text parts are `{"type": "text", "text": ...}`, Gemini's are
    `{"text": ...}`; a bare string is text too.
    """
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        text = part.get("text")
        if isinstance(text, str) and part.get("type", "text") == "text":
            return text
    return None


def content_text(content: Any) -> str:
    """The text of a message content (a string or a list of parts), parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [t for t in map(part_text, content) if t is not None]
        return texts[0] if len(texts) == 1 else "\n".join(texts)
    return ""


def content_tokens(content: Any) -> int:
    """Tokens of a message content: text parts by `count_tokens`, other parts by JSON size."""
    if content is None:
        return 0
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            text = part_text(part)
            total += count_tokens(text) if text is not None else json_tokens(part)
        return total
    return json_tokens(content)


def json_tokens(value: Any) -> int:
    """Tokens of a non-text part or definition: its compact JSON size / 4, rounded up."""
    try:
        size = len(orjson.dumps(value))
    except TypeError:
        size = len(repr(value))
    return (size + 3) // 4


@lru_cache(maxsize=8192)
def reply_pieces(model: str, prompt: str) -> tuple[str, ...]:
    """The full reply for (model, last user text), one token per piece."""
    digest = hashlib.sha256(f"{model}\x00{prompt}".encode()).digest()
    words = MIN_REPLY_WORDS + digest[0] % (MAX_REPLY_WORDS - MIN_REPLY_WORDS + 1)
    picked = [VOCABULARY[b] for b in digest[1 : 1 + words]]
    return (picked[0].capitalize(), *(" " + w for w in picked[1:]), ".")


@dataclass(slots=True, frozen=True)
class Reply:
    pieces: tuple[str, ...]  # what a stream sends, one chunk each
    text: str
    output_tokens: int
    # "stop" | "length" | "stop_sequence" | "tool_calls" | "content_filter" (each provider maps it)
    finish: str
    stop_sequence: str | None = None
    tool_calls: tuple[Any, ...] = ()  # simulator.tools.ToolCall, when the model calls tools
    more: tuple[Reply, ...] = ()  # the other choices, when n > 1 was asked for
    thinking: str = ""  # extended thinking (Anthropic), counted in output_tokens

    @property
    def total_output_tokens(self) -> int:
        return self.output_tokens + sum(r.output_tokens for r in self.more)


def piece_logprob(piece: str, position: int) -> float:
    """The log probability a simulated model gives a piece: in (-2.5, 0], deterministic."""
    digest = hashlib.sha256(f"{position}\x00{piece}".encode()).digest()
    return -round(digest[0] / 102.0, 4)


def top_alternatives(piece: str, position: int, k: int) -> list[tuple[str, float]]:
    """The k most likely pieces at a position: the chosen one first, then vocabulary words
    each less likely than the one before."""
    chosen = piece_logprob(piece, position)
    digest = hashlib.sha256(f"alt\x00{position}\x00{piece}".encode()).digest()
    alternatives = [(piece, chosen)]
    for i in range(1, k):
        word = VOCABULARY[digest[i % len(digest)]]
        alternatives.append((" " + word, round(chosen - 0.5 * i, 4)))
    return alternatives


@lru_cache(maxsize=8192)
def _plain_reply(model: str, prompt: str, max_tokens: int | None) -> Reply:
    pieces = reply_pieces(model, prompt)
    finish = "stop"
    if max_tokens is not None and max_tokens < len(pieces):
        pieces = pieces[:max_tokens]
        finish = "length"
    text = "".join(pieces)
    return Reply(pieces, text, len(pieces), finish)


def make_reply(model: str, prompt: str, max_tokens: int | None = None, stop: tuple[str, ...] = ()) -> Reply:
    """The reply after the output-token limit and stop sequences are applied."""
    reply = _plain_reply(model, prompt, max_tokens)
    if not stop:
        return reply
    # The earliest stop sequence wins; the text is cut just before it, as providers do.
    cut, matched = -1, None
    for seq in stop:
        if seq:
            at = reply.text.find(seq)
            if at >= 0 and (cut < 0 or at < cut):
                cut, matched = at, seq
    if matched is None:
        return reply
    pieces: list[str] = []
    used = 0
    for piece in reply.pieces:
        if used + len(piece) > cut:
            if cut > used:
                pieces.append(piece[: cut - used])
            break
        pieces.append(piece)
        used += len(piece)
    text = "".join(pieces)
    return Reply(tuple(pieces), text, count_tokens(text), "stop_sequence", matched)
