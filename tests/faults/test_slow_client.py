"""Slow clients and huge streams: the gateway relays with backpressure.

A `twoapi serve` process sits between the official OpenAI SDK and a provider that
streams as fast as it is allowed to (tests/faults/flood_provider.py), offering far more
than any buffer should hold. While the client stops reading, the gateway stops reading
from the provider: the provider is held within a few socket buffers of what the client
has taken, and the gateway's resident memory stays flat. When the client reads again
the stream flows again, and a huge stream read slowly to its end is complete and billed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from ledger.application import Ledger
from ledger.ids import parse_request_id
from tests.faults.flood_provider import FloodProvider
from tests.faults.serve_process import ServeProcess

MIB = 1024 * 1024
OFFERED = 2048 * MIB  # what the provider would send if nothing held it back
CLIENT_RECEIVE_BUFFER = 64 * 1024
# What may sit between the client and the provider while the client does not read:
# socket buffers on three sockets (the kernel's autotuning included), aiohttp's read
# buffer and the gateway's write buffer. Far below what an unbounded relay would take.
HELD_BOUND = 48 * MIB
RSS_GROWTH_BOUND = 48 * MIB


class Gateway(ServeProcess):
    """`twoapi serve` in its own process, with the flood provider as OpenAI, and a
    tenant whose key the tests use."""

    def __init__(self, data_dir: Path, provider: FloodProvider) -> None:
        ledger = Ledger.open(None, data_dir)
        ledger.create_tenant("slow")
        ledger.add_credits("slow", Decimal("1000"), reference="test")
        self.key = ledger.issue_key("slow").secret
        ledger.close()
        super().__init__(data_dir, data_dir / "gateway.log", OPENAI_API_KEY="flood-key",
                         OPENAI_BASE_URL=provider.base_url, TWOAPI_LOG_LEVEL="warning")

    def client(self) -> openai.OpenAI:
        # A client that reads slowly gets a small receive window: what it has not read
        # stays on the gateway's side of the connection, where it must be held back.
        transport = httpx.HTTPTransport(
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)])
        return openai.OpenAI(base_url=self.api_url, api_key=self.key, max_retries=0, timeout=60,
                             http_client=httpx.Client(transport=transport, timeout=60))

    def events(self, request_id: str) -> list[dict]:
        ledger = Ledger.open(None, self.data_dir)
        try:
            return ledger.event_dicts(parse_request_id(request_id))
        finally:
            ledger.close()


@pytest.fixture
def flood() -> Iterator[FloodProvider]:
    provider = FloodProvider(total_bytes=OFFERED)
    yield provider
    provider.stop()


@pytest.fixture
def gateway(tmp_path: Path, flood: FloodProvider) -> Iterator[Gateway]:
    running = Gateway(tmp_path, flood)
    yield running
    running.stop()


class PeakRss:
    """Samples a process's resident memory in the background; the peak seen."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.peak = gateway.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.gateway.rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def warm_up(gateway: Gateway) -> int:
    """One short stream first, so imports and pools are in the baseline; that RSS."""
    with gateway.client().chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
    ) as stream:
        for number, _ in enumerate(stream):
            if number > 50:
                break
    time.sleep(0.5)
    return gateway.rss()


def content_bytes(chunk: openai.types.chat.ChatCompletionChunk) -> int:
    return len(chunk.choices[0].delta.content or "") if chunk.choices else 0


def wait_for(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


STALLED = 4  # slow clients at once


def test_clients_that_stop_reading_hold_the_provider_back_and_gateway_memory_flat(gateway, flood):
    baseline = warm_up(gateway)
    assert wait_for(lambda: flood.stats.open_streams == 0)
    flood.stats.written = 0
    cut_before = flood.stats.streams_cut
    peak = PeakRss(gateway)
    opened = []
    received = 0
    streams = contextlib.ExitStack()
    for number in range(STALLED):
        raw = streams.enter_context(gateway.client().chat.completions.with_streaming_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": f"flood me {number}"}], stream=True,
        ))
        chunks = raw.parse()
        for count, chunk in enumerate(chunks):
            received += content_bytes(chunk)
            if count == 20:
                break
        opened.append((raw, chunks))

    # The clients stop reading. Within a moment the provider is held back: nothing more
    # flows while nobody reads, and what it got out is a few socket buffers per stream.
    time.sleep(1.5)
    held_at = flood.stats.written
    time.sleep(3.0)
    held = flood.stats.written
    stalled_rss = gateway.rss()
    assert held - held_at < 2 * MIB, (held_at, held)
    assert held - received < STALLED * HELD_BOUND, (held, received)
    assert stalled_rss - baseline < RSS_GROWTH_BOUND, (stalled_rss, baseline)

    # When one reads again, its stream flows again...
    raw, chunks = opened[0]
    request_id = raw.headers["x-request-id"]
    resumed = 0
    for chunk in chunks:
        resumed += content_bytes(chunk)
        if resumed > 64 * MIB:
            break
    assert flood.stats.written > held + 48 * MIB
    # ...and when the clients leave, the provider's connections are dropped.
    streams.close()
    assert wait_for(lambda: flood.stats.open_streams == 0), flood.stats
    assert flood.stats.streams_cut - cut_before == STALLED
    peak_rss = peak.stop()
    assert peak_rss - baseline < RSS_GROWTH_BOUND, (peak_rss, baseline)
    print(f"\n{STALLED} stalled streams held the provider to {held / MIB:.1f} MiB in all "
          f"({OFFERED // MIB} MiB offered to each); gateway RSS {baseline / MIB:.0f} MiB, "
          f"{stalled_rss / MIB:.0f} MiB stalled, peak {peak_rss / MIB:.0f} MiB")

    assert wait_for(lambda: [e["event"] for e in gateway.events(request_id)][-1:] == ["Failed"])
    summary = next(e for e in gateway.events(request_id) if e["event"] == "StreamSummarized")
    assert summary["client_disconnected"] is True


def test_a_huge_stream_read_slowly_completes_and_is_billed_with_flat_memory(gateway, flood):
    baseline = warm_up(gateway)
    flood.total_bytes = 256 * MIB
    finished = flood.stats.streams_finished
    peak = PeakRss(gateway)
    received = 0
    with gateway.client().chat.completions.with_streaming_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "a long one"}], stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        request_id = raw.headers["x-request-id"]
        usage = None
        for number, chunk in enumerate(raw.parse()):
            received += content_bytes(chunk)
            usage = chunk.usage or usage
            if number % 1000 == 999:
                time.sleep(0.5)  # a reader that keeps pausing
    peak_rss = peak.stop()
    assert flood.stats.streams_finished == finished + 1
    assert received == flood.stats.content_bytes >= 250 * MIB and usage is not None
    assert usage.completion_tokens == received // 4
    assert peak_rss - baseline < RSS_GROWTH_BOUND, (peak_rss, baseline)
    metered = next(e for e in gateway.events(request_id) if e["event"] == "UsageMetered")
    assert metered["source"] == "provider" and metered["output_tokens"] == usage.completion_tokens
    print(f"\n{received / MIB:.0f} MiB streamed; gateway RSS {baseline / MIB:.0f} MiB, peak {peak_rss / MIB:.0f} MiB")
