"""Hostile strings on every SQL path outside analytics, on SQLite and PostgreSQL.

Tenant names, key labels, references, reasons, notes, price-book model ids and
versions, path segments and query parameters of the Admin API, `/v1/usage` and the
`twoapi` commands get SQL metacharacters, quotes, NULs, very long strings and unicode.
Each answer is a clean 4xx or the value stored and read back exactly; never a 5xx or
a traceback; and afterwards every table is there, the projection has kept up (no event
it could not apply), and balances still reconcile with the ledger.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openai
import orjson
import pytest

from ledger.accounts import replay_balances
from ledger.application import Ledger
from ledger.projections.runner import close_view, open_view, wait_caught_up
from tests.faults.serve_process import TWOAPI, clean_env
from tests.support import RunningGateway, gateway_settings, start_gateway
from tests.tenancy.conftest import ADMIN_TOKEN, MASTER_KEY

HOSTILE = [
    "x'; DROP TABLE tenants; --",
    "Robert'); DELETE FROM api_keys WHERE ('1'='1",
    '" OR ""="',
    "1 OR 1=1",
    "%_%' ESCAPE '\\",
    "\\'; SELECT pg_sleep(5); --",
    "$1 ? :name @tenants",
    "a\x00b",
    "ǅemo 租户 🦄 \u202eevil",
    "line\nbreak\ttab\r",
    "x" * 100_000,
]
URL_CHARS = 4000  # a URL carries at most this much of a hostile string (httpx refuses longer URLs)
# The commands start a process each (about a second), so they get a few representatives:
# quotes and SQL, unicode with a direction override, too long, a NULL that is a name.
# (A NUL cannot be passed in argv.)
ARGV_HOSTILE = ["x'; DROP TABLE tenants; --", "ǅemo 租户 🦄 \u202eevil", "x" * 100_000, "NULL"]
TABLES = ("tenants", "accounts", "entries", "api_keys", "request_tenants", "usage_daily", "spend_monthly",
          "provider_credentials")


@pytest.fixture
def gw(tmp_path: Path, simulator, store_url: str | None) -> Iterator[RunningGateway]:
    settings = replace(gateway_settings(tmp_path / "data", simulator.url, store_url), admin_token=ADMIN_TOKEN,
                       master_key=MASTER_KEY)
    gateway = start_gateway(settings)
    yield gateway
    gateway.stop()


class Sweep:
    """Calls that must never be a server error; what went wrong, collected."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                 timeout=60)
        self.problems: list[str] = []

    def call(self, method: str, path: str, expect: tuple[int, ...], **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code not in expect:
            shown = {k: (v if len(str(v)) < 200 else str(v)[:200] + "...") for k, v in kwargs.items()}
            self.problems.append(f"{method} {path[:120]} {shown}: {response.status_code} {response.text[:300]}")
        return response


def test_hostile_strings_through_the_admin_api_are_refused_or_stored_exactly(gw: RunningGateway):
    sweep = Sweep(gw)
    sweep.call("POST", "/admin/tenants", (201,), json={"name": "acme", "credits": "10.00", "reference": "start"})
    key = sweep.call("POST", "/admin/tenants/acme/keys", (201,), json={"label": "plain"}).json()
    # A tenant called NULL is a tenant called "NULL".
    sweep.call("POST", "/admin/tenants", (201,), json={"name": "NULL"})
    assert sweep.call("GET", "/admin/tenants/NULL", (200,)).json()["name"] == "NULL"

    for text in HOSTILE:
        # Names: only a short safe alphabet is a tenant name; anything else is refused.
        sweep.call("POST", "/admin/tenants", (400,), json={"name": text})
        segment = quote(text[:URL_CHARS], safe="")
        for path in (f"/admin/tenants/{segment}", f"/admin/tenants/{segment}/keys", f"/admin/keys/{segment}",
                     f"/admin/tenants/{segment}/credits", f"/admin/tenants/{segment}/entries"):
            sweep.call("GET", path, (400, 404, 405))
        sweep.call("POST", f"/admin/tenants/{segment}/suspend", (400, 404))
        sweep.call("DELETE", f"/admin/keys/{segment}", (400, 404))
        sweep.call("PUT", f"/admin/keys/{segment}/limits", (400, 404), json={"rpm": 5})
        sweep.call("PUT", f"/admin/tenants/acme/provider-keys/{segment}", (400, 404), json={"api_key": "sk-x"})
        sweep.call("GET", "/admin/tenants/acme/entries", (200, 400), params={"limit": text[:URL_CHARS]})
        sweep.call("GET", "/admin/tenants", (200, 400), params={text[:URL_CHARS]: text[:URL_CHARS]})

        # Free text is stored as given and read back exactly (or refused, never a 5xx).
        label = sweep.call("POST", "/admin/tenants/acme/keys", (201, 400), json={"label": text})
        if label.status_code == 201:
            shown = {k["key_id"]: k["label"] for k in sweep.call("GET", "/admin/tenants/acme/keys", (200,)).json()
                     ["data"]}
            if shown.get(label.json()["key_id"]) != text:
                sweep.problems.append(f"label {text[:40]!r} read back as {shown.get(label.json()['key_id'])!r:.60}")
        credit = sweep.call("POST", "/admin/tenants/acme/credits", (201, 400),
                            json={"amount": "0.01", "reference": text})
        if credit.status_code == 201:
            references = [e.get("reference") for e in
                          sweep.call("GET", "/admin/tenants/acme/credits", (200,)).json()["data"]]
            if text not in references:
                sweep.problems.append(f"reference {text[:40]!r} not read back")
        sweep.call("POST", "/admin/tenants/acme/adjustments", (201, 400),
                   json={"amount": "-0.01", "reason": text, "corrects": text})
        sweep.call("POST", "/admin/tenants/acme/suspend", (200, 400), json={"reason": text})
        sweep.call("POST", "/admin/tenants/acme/reactivate", (200, 400), json={"reason": text})
        sweep.call("DELETE", f"/admin/keys/{label.json()['key_id']}" if label.status_code == 201 else "/admin/keys/x",
                   (200, 400, 404), json={"reason": text})
        sweep.call("PUT", f"/admin/keys/{key['key_id']}/limits", (400,), json={"allowed_models": [text]})
        sweep.call("PUT", "/admin/tenants/acme/routing", (400,), json={"strategy": text})
        sweep.call("PUT", "/admin/tenants/acme/routing", (400,), json={"fallbacks": [text]})
        sweep.call("POST", "/admin/price-books", (400,),
                   json={"prices": {text: {"input": "1", "output": "2"}}})
        sweep.call("POST", "/admin/price-books", (400,),
                   json={"prices": {"openai/gpt-4o-mini": {"input": "1", "output": "2"}}, "version": text})
        book = sweep.call("POST", "/admin/price-books", (201, 400),
                          json={"prices": {"openai/gpt-4o-mini": {"input": "0.15", "output": "0.6"}}, "note": text})
        if book.status_code == 201:
            notes = {v["version"]: v.get("note") for v in sweep.call("GET", "/admin/price-books", (200,)).json()
                     ["data"]}
            if notes.get(book.json()["version"]) != text:
                sweep.problems.append(f"note {text[:40]!r} read back as {notes.get(book.json()['version'])!r:.60}")
        sweep.call("PUT", "/admin/tenants/acme/provider-keys/openai", (200, 400), json={"api_key": text})

    sweep.call("DELETE", "/admin/tenants/acme/provider-keys/openai", (200,))
    # The tenant-facing usage report: every parameter, hostile.
    usage = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key['key']}"}, timeout=30)
    for text in (h[:URL_CHARS] for h in HOSTILE):
        for params in ({"start": text}, {"end": text}, {"group_by": text}, {text: "1"},
                       {"start": "2026-01-01", "end": text}):
            response = usage.get("/v1/usage", params=params)
            if response.status_code != 400:
                sweep.problems.append(f"/v1/usage {str(params)[:80]}: {response.status_code} {response.text[:200]}")
    assert not sweep.problems, "\n".join(sweep.problems)
    assert_intact(gw, tenants={"acme", "NULL"})


def test_hostile_strings_through_the_cli_are_refused_or_stored_exactly(gw: RunningGateway, tmp_path: Path):
    env = clean_env(TWOAPI_DATA_DIR=str(gw.settings.data_dir), DATABASE_URL=gw.settings.database_url,
                    TWOAPI_PROJECTIONS="off", TWOAPI_MASTER_KEY=MASTER_KEY)
    problems: list[str] = []

    def twoapi(*args: str, ok: tuple[int, ...] = (0, 1, 2), stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run([TWOAPI, *args], env=env, capture_output=True, text=True, timeout=120, input=stdin)
        if done.returncode not in ok or "Traceback" in done.stderr:
            problems.append(f"twoapi {' '.join(a[:40] for a in args)}: exit {done.returncode} {done.stderr[-400:]}")
        return done

    twoapi("tenants", "create", "acme", ok=(0,))
    twoapi("credits", "add", "--tenant", "acme", "--amount", "5.00", ok=(0,))
    twoapi("keys", "create", "--tenant", "acme", ok=(0,))
    accepted: set[str] = {"acme"}
    labels_sent: set[str] = set()
    for text in ARGV_HOSTILE:
        if twoapi("tenants", "create", text).returncode == 0:
            accepted.add(text)
        twoapi("tenants", "show", text)
        twoapi("tenants", "suspend", text, "--reason", text)
        if twoapi("keys", "create", "--tenant", "acme", "--label", text).returncode == 0:
            labels_sent.add(text)
        twoapi("keys", "list", "--tenant", text)
        twoapi("keys", "revoke", text, "--reason", text)
        twoapi("credits", "add", "--tenant", "acme", "--amount", text, "--reference", text)
        twoapi("credits", "adjust", "--tenant", "acme", "--amount", "-0.01", "--reason", text, "--corrects", text)
        twoapi("credits", "list", "--tenant", text)
        twoapi("limits", "--key", text, "--rpm", text, "--models", text)
        twoapi("ledger", "show", text)
        twoapi("provider-keys", "set", "--tenant", text, "--provider", "openai", stdin="sk-x\n")
        book = tmp_path / "book.json"
        book.write_text(orjson.dumps({text: {"input": "1", "output": "2"},
                                      "openai/gpt-4o-mini": {"input": "0.15", "output": "0.6"}}).decode())
        twoapi("price-books", "publish", str(book), "--note", text, "--version", text)
    assert labels_sent >= {"x'; DROP TABLE tenants; --", "ǅemo 租户 🦄 \u202eevil", "NULL"}
    listed = twoapi("keys", "list", "--tenant", "acme", ok=(0,)).stdout
    labels = {orjson.loads(line).get("label") for line in listed.splitlines() if line.startswith("{")}
    problems += [f"label {text[:40]!r} not read back" for text in labels_sent if text not in labels]
    assert not problems, "\n".join(problems)
    assert_intact(gw, tenants=accepted)


def assert_intact(gw: RunningGateway, tenants: set[str]) -> None:
    """Every table is there, the projection applied every event (none stuck it), the
    tenants are the ones created, balances reconcile with the ledger, and a request
    is still served and billed."""
    settings = gw.settings
    ledger = Ledger.open(settings.database_url, settings.data_dir)
    view = open_view(settings.database_url, settings.data_dir)
    try:
        assert wait_caught_up(ledger, view, timeout=30), "the projection stopped: an event it could not apply"
        assert {t["name"] for t in view.tenants()} == tenants
        with view.reading() as cursor:
            for table in TABLES:
                cursor.execute(view.sql(f"SELECT count(*) FROM @{table}"))
        recomputed = replay_balances(ledger)
        for tenant in tenants:
            detail = view.tenant(tenant, time.strftime("%Y-%m"))
            assert Decimal(detail["balance"]) == recomputed.get(f"tenant:{tenant}", Decimal(0)), tenant
    finally:
        close_view(view)
        ledger.close()
    issued = httpx.post(gw.url + "/admin/tenants/acme/keys", json={"label": "after"}, timeout=30,
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert issued.status_code == 201, issued.text
    client = openai.OpenAI(base_url=gw.api_url, api_key=issued.json()["key"], max_retries=0)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "still here?"}])
