"""Some billable traffic for audit tests: two tenants, plain and streaming requests,
credits, an adjustment and a refused request, through the official openai SDK."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventsourcing.utils import get_topic

from ledger.audit.scan import rows
from ledger.events import LedgerSeal
from tests.support import RunningGateway
from tests.tenancy.conftest import MESSAGES, Admin, Tenant, caught_up, client

MODELS = ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "google/gemini-1.5-flash")


@dataclass
class Traffic:
    tenants: dict[str, Tenant]
    request_ids: list[str]

    def key(self, tenant: str) -> str:
        return self.tenants[tenant].key


def make_traffic(gw: RunningGateway, admin: Admin, ledger: Any, view: Any, requests: int = 6) -> Traffic:
    """Tenants acme (two keys) and beta; request i goes to acme when even, with model
    MODELS[i % 3], streaming when i % 3 == 2."""
    tenants = [admin.tenant("acme", credits="5.00", keys=2), admin.tenant("beta", credits="3.00")]
    admin.ok("POST", "/admin/tenants/beta/adjustments", json={"amount": "-0.000000007", "reason": "rounding"})
    request_ids = []
    for i in range(requests):
        tenant = tenants[i % 2]
        key = tenant.keys[i % len(tenant.keys)]["key"]
        sdk = client(gw, key)
        model = MODELS[i % len(MODELS)]
        if i % 3 == 2:
            with sdk.chat.completions.with_streaming_response.create(
                    model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}) as response:
                request_ids.append(response.headers["x-request-id"])
                for _ in response.iter_lines():
                    pass
        else:
            raw = sdk.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
            request_ids.append(raw.headers["x-request-id"])
    caught_up(ledger, view)
    return Traffic({t.name: t for t in tenants}, request_ids)


def unsealed_head(ledger: Any) -> int:
    """The position of the newest event other than a seal or the seal chain's creation:
    what a dry run must not move (the gateway's projection worker seals the ledger every
    few seconds meanwhile, and creates the chain with its first seal)."""
    sealing = {get_topic(LedgerSeal.LedgerSealed), get_topic(LedgerSeal.Created)}
    return max((r.position for r in rows(ledger) if r.topic not in sealing), default=0)
