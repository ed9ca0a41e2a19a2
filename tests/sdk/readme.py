"""The brief's SDK snippets, and how to find them in README.md."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Verbatim from the product brief (seed/2api-README.md, "Quick Start (SDK / Client Usage)").
BRIEF_PYTHON = '''from twoapi import TwoAPI

client = TwoAPI(api_key="2api_your_key")

# Simple chat
response = client.chat("Hello!")
print(response.content)

# With specific model
response = client.chat(
    "Explain quantum computing",
    model="anthropic/claude-3-5-sonnet"
)

# Cost-optimized routing
response = client.chat(
    "Simple question",
    routing_strategy="cost"
)
'''

BRIEF_JAVASCRIPT = '''import TwoAPI from 'twoapi';

const client = new TwoAPI({ apiKey: '2api_your_key' });

// Simple chat
const response = await client.chat('Hello!');
console.log(response.content);

// Streaming
for await (const chunk of client.chatStream('Tell me a story')) {
  process.stdout.write(chunk);
}
'''

PLACEHOLDER_KEY = "2api_your_key"


def readme_snippet(language: str) -> str:
    """The `language` code block of README.md's "SDKs" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## SDKs\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"README.md's SDKs section has no {language} block"
    return match.group(1)
