"""The deterministic text and token rules that every simulated provider meters by."""

from __future__ import annotations

from simulator.text import (
    MAX_REPLY_WORDS,
    MIN_REPLY_WORDS,
    content_tokens,
    count_tokens,
    json_tokens,
    make_reply,
    reply_pieces,
)


def test_a_token_is_a_word_run_or_one_punctuation_character():
    assert count_tokens("") == 0
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("  spaced   out  ") == 2
    assert count_tokens("don't") == 3
    assert count_tokens("x" * 5000) == 1


def test_the_reply_depends_only_on_model_and_prompt():
    first = reply_pieces("gpt-4o-mini", "Name three rivers.")
    assert first == reply_pieces("gpt-4o-mini", "Name three rivers.")
    assert first != reply_pieces("gpt-4o", "Name three rivers.")
    assert first != reply_pieces("gpt-4o-mini", "Name four rivers.")


def test_every_reply_piece_is_exactly_one_token_and_the_length_is_bounded():
    for prompt in ("a", "b", "hello there", "x" * 100, "Ünïcode ✓"):
        pieces = reply_pieces("m", prompt)
        assert MIN_REPLY_WORDS + 1 <= len(pieces) <= MAX_REPLY_WORDS + 1
        assert all(count_tokens(piece) == 1 for piece in pieces)
        assert pieces[-1] == "."
        assert count_tokens("".join(pieces)) == len(pieces)


def test_output_limit_keeps_the_first_tokens_and_finishes_with_length():
    full = make_reply("m", "p")
    cut = make_reply("m", "p", max_tokens=5)
    assert cut.pieces == full.pieces[:5]
    assert (cut.output_tokens, cut.finish) == (5, "length")
    assert make_reply("m", "p", max_tokens=1000) == full
    assert full.finish == "stop"


def test_a_stop_sequence_cuts_the_text_before_its_first_occurrence():
    full = make_reply("m", "p")
    word = full.pieces[3].strip()
    cut = make_reply("m", "p", stop=("zzz-not-there", word))
    assert cut.text == full.text[: full.text.index(word)]
    assert cut.finish == "stop_sequence" and cut.stop_sequence == word
    assert cut.output_tokens == count_tokens(cut.text)
    assert "".join(cut.pieces) == cut.text


def test_parts_that_are_not_text_count_by_their_json_size_and_never_crash():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert content_tokens([{"type": "text", "text": "two words"}, image]) == 2 + json_tokens(image)
    assert content_tokens([{"text": "gemini part"}]) == 2
    assert content_tokens(None) == 0
    assert content_tokens({"weird": object()}) > 0
    assert content_tokens([{"type": "tool_result", "content": [{"type": "text", "text": "x"}]}]) > 0
