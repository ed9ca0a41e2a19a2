"""Fake OpenAI, Anthropic and Gemini endpoints for tests, demos and benchmarks.

Deterministic replies and usage (`simulator.text`), steerable faults and latency
(`simulator.control`, the `/_sim/*` endpoints), one module per provider wire protocol.
Start one with `simulator.app.start_simulator`, `start_in_thread` or `serve`.
"""
