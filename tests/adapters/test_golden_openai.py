"""Golden wire translation, OpenAI: the request goes out as the client wrote it, the
answer comes back as OpenAI wrote it (tool calls, other choices, logprobs kept), and
a stream's tool-call deltas pass through with stable index and id."""

from __future__ import annotations

import base64
from array import array

import orjson
import pytest
from adapter_helpers import run_stream
from golden import CONVERSATION, TOOLS, arguments_by_index, sse

from adapters.base import Usage
from adapters.errors import UpstreamError
from adapters.openai import (
    OpenAIStreamState,
    build_request,
    embed_request,
    image_request,
    parse_embeddings,
    parse_images,
    parse_response,
)
from adapters.params import unsupported_parameter


def test_request_out_is_the_clients_with_the_upstream_model():
    body = {"model": "openai/gpt-4o", "messages": CONVERSATION, "tools": TOOLS, "tool_choice": "required",
            "parallel_tool_calls": True, "n": 2, "seed": 5, "logprobs": True, "top_logprobs": 3, "user": "u",
            "metadata": {"k": "v"}, "store": True, "reasoning_effort": "low", "routing": {"max_attempts": 2},
            "models": ["anthropic/claude-3-5-haiku"]}
    payload = build_request(body, "gpt-4o-2024-08-06", stream=False)
    expected = {k: v for k, v in body.items() if k not in ("routing", "models")}
    assert payload == {**expected, "model": "gpt-4o-2024-08-06"}
    assert unsupported_parameter("openai", body) is None


def test_response_in_empty_content_parallel_tool_calls():
    message = {"role": "assistant", "content": None, "refusal": None, "annotations": [], "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": '{"tz":"Europe/Rome"}'}},
    ]}
    native = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
              "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}],
              "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}}
    completion = parse_response(native)
    assert completion.message == message
    assert completion.finish_reason == "tool_calls"
    assert completion.more_choices is None and completion.logprobs is None


def test_other_choices_and_logprobs_are_kept():
    logprobs = {"content": [{"token": "Hi", "logprob": -0.2, "bytes": [72, 105], "top_logprobs": []}], "refusal": None}
    second = {"index": 1, "message": {"role": "assistant", "content": "Yo"}, "logprobs": None,
              "finish_reason": "length"}
    native = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "logprobs": logprobs,
                           "finish_reason": "stop"}, second], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    completion = parse_response(native)
    assert completion.logprobs == logprobs
    assert completion.more_choices == [second]


def _chunk(delta: dict, finish: str | None = None, index: int = 0) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}


TOOL_STREAM = [
    _chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}],
        "refusal": None}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"S\\u00e3o Paulo \\'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"x\\""}'}}]}),
    _chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                            "function": {"name": "time", "arguments": ""}}]}),
    _chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz":"America/Sao_Paulo"}'}}]}),
    _chunk({}, "tool_calls"),
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
     "usage": {"prompt_tokens": 20, "completion_tokens": 31, "total_tokens": 51}},
]


@pytest.mark.parametrize("piece", [None, 1, 4, 9])
def test_stream_parallel_tool_calls_pass_through_with_stable_index_and_id(piece):
    raw = sse(*((None, c) for c in TOOL_STREAM)) + b"data: [DONE]\n\n"
    state = OpenAIStreamState()
    chunks = run_stream(state, raw, piece)
    assert chunks == [c["choices"][0] for c in TOOL_STREAM[:-1]]
    calls = arguments_by_index(chunks)
    assert (calls[0]["id"], calls[0]["name"], calls[1]["id"], calls[1]["name"]) == ("call_a", "weather", "call_b",
                                                                                     "time")
    assert orjson.loads(calls[0]["arguments"]) == {"city": 'São Paulo "x"'}
    assert orjson.loads(calls[1]["arguments"]) == {"tz": "America/Sao_Paulo"}
    assert state.finish_reason == "tool_calls"
    assert state.usage == Usage(20, 31, 0)
    state.end()


def test_stream_cut_inside_a_tool_argument():
    raw = sse(*((None, c) for c in TOOL_STREAM[:3]))
    state = OpenAIStreamState()
    chunks = run_stream(state, raw + b'data: {"id":"c","choices":[{"index":0,"delta":{"tool_ca', 2)
    assert arguments_by_index(chunks)[0]["arguments"] == '{"city":"S\\u00e3o Paulo \\'
    with pytest.raises(UpstreamError) as info:
        state.end()
    assert info.value.code == "upstream_error"


@pytest.mark.parametrize("finish", ["stop", "length", "tool_calls", "content_filter"])
def test_finish_reasons_pass_through_exactly(finish):
    native = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]}
    assert parse_response(native).finish_reason == finish
    raw = sse((None, _chunk({"role": "assistant", "content": "x"})), (None, _chunk({}, finish))) + b"data: [DONE]\n\n"
    state = OpenAIStreamState()
    run_stream(state, raw)
    assert state.finish_reason == finish


def test_embeddings_pass_through():
    body = {"model": "openai/text-embedding-3-small", "input": ["a", "b"], "dimensions": 2,
            "encoding_format": "base64"}
    assert embed_request(body, "text-embedding-3-small") == {**body, "model": "text-embedding-3-small"}
    vector = base64.b64encode(array("f", [0.5, -0.25]).tobytes()).decode()
    answer = parse_embeddings({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                               "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2}})
    assert answer.data == [{"object": "embedding", "index": 0, "embedding": vector}]
    assert (answer.usage.input_tokens, answer.estimated) == (2, False)


def test_gpt_image_is_asked_without_response_format_and_url_answers_are_data_urls():
    body = {"model": "openai/gpt-image-1", "prompt": "a cat", "response_format": "url", "n": 2}
    assert image_request(body, "gpt-image-1") == {"model": "gpt-image-1", "prompt": "a cat", "n": 2}
    assert image_request(body, "dall-e-3")["response_format"] == "url"
    native = {"created": 5, "data": [{"b64_json": "QUJD"}, {"b64_json": "REVG"}], "output_format": "webp",
              "usage": {"input_tokens": 3, "output_tokens": 2112, "total_tokens": 2115}}
    images = parse_images(native, as_data_urls=True)
    assert images.data == [{"url": "data:image/webp;base64,QUJD"}, {"url": "data:image/webp;base64,REVG"}]
    assert (images.usage.images, images.usage.input_tokens, images.usage.output_tokens, images.created) == (
        2, 3, 2112, 5)
    dalle = parse_images({"created": 6, "data": [{"url": "https://x/y.png", "revised_prompt": "A cat."}]}, False)
    assert dalle.data == [{"url": "https://x/y.png", "revised_prompt": "A cat."}]
    assert (dalle.usage.images, dalle.usage.input_tokens) == (1, 0)
