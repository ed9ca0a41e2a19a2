"""POST /admin/reprice: the re-pricing engine's dry run over the Admin API, on real
stores (SQLite and PostgreSQL): the report equals plan()'s, nothing is recorded, bad
input is a 400 (an unknown version or tenant a 404), never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import orjson

from gateway.price_list import base_price_book
from ledger.repricing import plan
from tests.audit.traffic import make_traffic, unsealed_head
from tests.tenancy.conftest import ADMIN_TOKEN

MINI = "openai/gpt-4o-mini"


def doubled(model: str) -> dict[str, str]:
    price = base_price_book().prices[model]
    return {"input": str(2 * price.input), "output": str(2 * price.output),
            "cached_input": str(2 * price.cached_input)}


def today() -> tuple[str, str]:
    day = datetime.now(UTC).date()
    return day.isoformat(), (day + timedelta(days=1)).isoformat()


def lines_of(report: dict) -> dict[tuple[str, str], dict]:
    return {(line["tenant"], line["model"]): line for line in report["lines"]}


def test_the_same_book_gives_zero_delta_and_a_doubled_price_doubles_that_models_cost(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view)
    head = unsealed_head(ledger)
    start, end = today()

    same = admin.ok("POST", "/admin/reprice", json={"price_book": "base", "from": start, "to": end})
    assert same["object"] == "repricing_plan" and same["dry_run"] is True
    assert same["events"] == 6 and same["changed"] == 0 and same["unpriced"] == 0
    assert Decimal(same["total"]["delta"]) == 0 and Decimal(same["total"]["old_cost"]) > 0
    assert all(Decimal(line["delta"]) == 0 and line["old_cost"] == line["new_cost"] for line in same["lines"])
    assert {t for t, _ in lines_of(same)} == {"acme", "beta"}
    # The engine's own report, as the CLI prints it (the run id included: same book, window, tenant).
    engine = plan(ledger, base_price_book(), datetime.fromisoformat(start).replace(tzinfo=UTC),
                  datetime.fromisoformat(end).replace(tzinfo=UTC)).report()
    assert {k: same[k] for k in engine} == engine
    base = base_price_book().prices[MINI]
    assert same["prices"][MINI] == {"input": str(base.input), "output": str(base.output),
                                    "cached_input": str(base.cached_input)}

    # The default window (the last 30 days) holds today's traffic too.
    assert admin.ok("POST", "/admin/reprice", json={"price_book": "base"})["total"] == same["total"]

    # A table doubling one model's prices (named by its alias): its delta is its old cost.
    table = admin.ok("POST", "/admin/reprice", json={"prices": {"gpt-4o-mini": doubled(MINI)}, "from": start,
                                                     "to": end})
    assert table["price_book"].startswith("file-") and table["unpriced"] == 4
    for (tenant, model), line in lines_of(table).items():
        old, new, delta = (Decimal(line[k]) for k in ("old_cost", "new_cost", "delta"))
        assert old == Decimal(lines_of(same)[(tenant, model)]["old_cost"])
        if model == MINI:
            assert old > 0 and delta == old and new == 2 * old
        else:
            assert delta == 0 and new == old
    mini_old = sum(Decimal(line["old_cost"]) for (_, m), line in lines_of(table).items() if m == MINI)
    assert Decimal(table["total"]["delta"]) == mini_old

    assert unsealed_head(ledger) == head  # dry runs: nothing recorded

    # The same prices published as a version (in force only in 2100): the same report.
    admin.ok("POST", "/admin/price-books", json={"version": "double-mini", "effective_at": "2100-01-01T00:00:00Z",
                                                 "prices": {MINI: doubled(MINI)}})
    head = unsealed_head(ledger)
    version = admin.ok("POST", "/admin/reprice", json={"price_book": "double-mini", "from": start, "to": end})
    assert version["price_book"] == "double-mini"
    assert version["lines"] == table["lines"] and version["total"] == table["total"]
    assert version["prices"] == {MINI: doubled(MINI)}

    # One tenant only.
    beta = admin.ok("POST", "/admin/reprice", json={"price_book": "double-mini", "tenant": "beta", "from": start,
                                                    "to": end})
    assert {line["tenant"] for line in beta["lines"]} == {"beta"} and beta["events"] == 3

    assert unsealed_head(ledger) == head  # dry runs, every time


BAD_BODIES = [
    (None, None),  # no body
    ([], None),  # not an object
    ({}, "price_book"),  # neither a version nor a table
    ({"price_book": "base", "prices": {MINI: {"input": "1", "output": "1"}}}, "price_book"),  # both
    ({"price_book": 7}, "price_book"),
    ({"price_book": ""}, "price_book"),
    ({"prices": {}}, "prices"),
    ({"prices": "cheap"}, "prices"),
    ({"prices": {MINI: {"input": 0.1, "output": "1"}}}, "prices"),  # a float
    ({"prices": {MINI: {"input": "-1", "output": "1"}}}, "prices"),
    ({"prices": {MINI: {"input": "1"}}}, "prices"),  # input without output
    ({"prices": {MINI: {"per_call": "1"}}}, "prices"),
    ({"prices": {MINI: {"input": "1", "output": "1"}, "gpt-4o-mini": {"input": "2", "output": "2"}}}, "prices"),
    ({"price_book": "base", "from": "yesterday"}, "from"),
    ({"price_book": "base", "to": {"day": 1}}, "to"),
    ({"price_book": "base", "from": "2025-02-01", "to": "2025-01-01"}, "to"),
    ({"price_book": "base", "from": 1e30}, "from"),
    ({"price_book": "base", "tenant": 5}, "tenant"),
    ({"price_book": "base", "tenant": "no spaces allowed"}, "tenant"),
    ({"price_book": "base", "apply": True}, "apply"),  # never applies
]


def test_bad_bodies_are_400s(admin):
    for body, param in BAD_BODIES:
        response = admin.post("/admin/reprice", content=b"" if body is None else orjson.dumps(body),
                              headers={"content-type": "application/json"})
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"], body
        assert error["param"] == param, (body, error)


def test_unknown_versions_and_tenants_are_404s_and_invalid_json_a_400(admin):
    response = admin.post("/admin/reprice", json={"price_book": "no-such-version"})
    assert response.status_code == 404, response.text
    assert "no-such-version" in response.json()["error"]["message"]
    assert "base" in response.json()["error"]["message"]  # the versions there are
    response = admin.post("/admin/reprice", json={"price_book": "base", "tenant": "nobody"})
    assert response.status_code == 404 and response.json()["error"]["param"] == "tenant"
    response = admin.post("/admin/reprice", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_the_admin_token_is_required(gw, admin):
    body = {"price_book": "base"}
    assert httpx.post(gw.url + "/admin/reprice", json=body, timeout=10).status_code == 401
    wrong = httpx.post(gw.url + "/admin/reprice", json=body, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "authentication_error"
    key = admin.tenant("acme").key
    tenant = httpx.post(gw.url + "/admin/reprice", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert tenant.status_code == 403
    ok = httpx.post(gw.url + "/admin/reprice", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    timeout=10)
    assert ok.status_code == 200 and ok.json()["events"] == 0
