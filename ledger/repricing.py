"""Re-pricing by replay: what usage would have cost under another price book.

`plan()` replays the `UsageMetered` events of a window (and tenant) through a price
book and reports, per tenant and model, the cost as it stands (as charged, or as
corrected by earlier applied runs), the new cost and the delta. It reads and
changes nothing. `apply()` records a plan as a `RepricingRun`: its `UsageRepriced`
events name each usage event whose cost changes (old and new cost), and one
`Tenant.BalanceAdjusted` per tenant (corrects `reprice:<run id>`) moves the balance
by the delta, all in one transaction; so balances, exports and analytics follow.
A run's id is derived from what it does (book, window, tenant) unless given, and a
run is recorded once: applying it again changes nothing.

Usage of a model the book does not price keeps its cost (counted as `unpriced`).
The dashboards' re-pricing page runs `plan()` through the Admin API.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresApplicationRecorder

from ledger.accounts import money_text
from ledger.audit.scan import Owners, pages, rows, timestamp, topics
from ledger.events import RepricingRun, Request
from ledger.pricing import PriceBook

ZERO = Decimal(0)
MAX_CORRECTIONS_PER_EVENT = 2000
USAGE_TOPICS = topics(Request.Received, Request.UsageMetered)
REPRICED_TOPICS = topics(RepricingRun.UsageRepriced)
_RECEIVED, _METERED = USAGE_TOPICS


@dataclass(slots=True)
class Line:
    """One tenant and model: usage events, cost as it stands, cost under the new book."""

    events: int = 0
    old_cost: Decimal = ZERO
    new_cost: Decimal = ZERO

    @property
    def delta(self) -> Decimal:
        return self.new_cost - self.old_cost


GroupKey = tuple[str, str, str, str]  # tenant, key id, model, day (YYYY-MM-DD)


@dataclass(slots=True)
class Plan:
    run_id: str
    book: PriceBook
    prices: dict[str, dict[str, str]] | None  # the table, when the book is not a published version
    start: datetime
    end: datetime
    tenant: str | None
    lines: dict[tuple[str, str], Line] = field(default_factory=lambda: defaultdict(Line))
    corrections: dict[GroupKey, list[list[str]]] = field(default_factory=lambda: defaultdict(list))
    scanned: int = 0  # usage events in the window and scope
    unpriced: int = 0  # of them, of models the book does not price (cost kept)
    unattributed: int = 0  # usage of requests with no Received (not re-priced)

    @property
    def changed(self) -> int:
        return sum(len(c) for c in self.corrections.values())

    def merge(self, part: Plan) -> None:
        """Add the replay of a later range of the ledger (made by another process)."""
        for key, line in part.lines.items():
            mine = self.lines[key]
            mine.events += line.events
            mine.old_cost += line.old_cost
            mine.new_cost += line.new_cost
        for group, corrections in part.corrections.items():
            self.corrections[group].extend(corrections)
        self.scanned += part.scanned
        self.unpriced += part.unpriced
        self.unattributed += part.unattributed

    def deltas(self) -> dict[str, Decimal]:
        per_tenant: dict[str, Decimal] = defaultdict(Decimal)
        for (tenant, _), line in self.lines.items():
            per_tenant[tenant] += line.delta
        return dict(per_tenant)

    def report(self) -> dict[str, Any]:
        total = Line()
        rows_ = []
        for (tenant, model), line in sorted(self.lines.items()):
            rows_.append({"tenant": tenant, "model": model, "events": line.events,
                          "old_cost": money_text(line.old_cost), "new_cost": money_text(line.new_cost),
                          "delta": money_text(line.delta)})
            total.events += line.events
            total.old_cost += line.old_cost
            total.new_cost += line.new_cost
        return {
            "run_id": self.run_id, "price_book": self.book.version, "from": self.start.isoformat(),
            "to": self.end.isoformat(), "tenant": self.tenant, "events": self.scanned, "changed": self.changed,
            "unpriced": self.unpriced, "unattributed": self.unattributed, "lines": rows_,
            "total": {"events": total.events, "old_cost": money_text(total.old_cost),
                      "new_cost": money_text(total.new_cost), "delta": money_text(total.delta)},
        }


def run_id_for(version: str, start: datetime, end: datetime, tenant: str | None) -> str:
    """The default run id: the same book, window and tenant give the same run."""
    text = f"{version}|{start.isoformat()}|{end.isoformat()}|{tenant or '*'}"
    return "rp-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def file_version(prices: dict[str, dict[str, str]]) -> str:
    """The version name of a price table read from a file (not published)."""
    return "file-" + hashlib.sha256(orjson.dumps(prices, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def current_costs(ledger: Any) -> dict[str, str]:
    """The cost (a decimal string) of each usage event corrected by applied runs, as it
    stands now. Text, not Decimal: a replay reads few of them, and worker processes
    are sent all of them (a Decimal pickles at seven times the cost)."""
    costs: dict[str, str] = {}
    for row in rows(ledger, only=REPRICED_TOPICS):
        for corrected, _, after in row.fields()["corrections"]:
            costs[corrected] = after
    return costs


def plan(ledger: Any, book: PriceBook, start: datetime, end: datetime, tenant: str | None = None,
         prices: dict[str, dict[str, str]] | None = None, run_id: str | None = None,
         progress: Callable[[int], None] | None = None, workers: int = 1) -> Plan:
    """Replay the usage metered in [start, end) (of `tenant`) through `book`.
    `progress` is called with positions read up to (for a progress bar). With
    `workers` > 1 on PostgreSQL, that many processes replay ranges of the ledger side
    by side (ledger/repricing_pool.py): for a command line, not inside a server."""
    result = Plan(run_id or run_id_for(book.version, start, end, tenant), book, prices, start, end, tenant)
    corrected = current_costs(ledger)
    if workers > 1 and isinstance(ledger.recorder, PostgresApplicationRecorder):
        from ledger.repricing_pool import replay_in_processes

        replay_in_processes(ledger, result, corrected, workers, progress)
    else:
        replay_range(ledger, result, corrected, progress=progress)
    return result


def replay_range(ledger: Any, result: Plan, corrected: dict[str, str], after: int = 0, stop: int | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
    """Replay the usage events at positions in (after, stop] into `result`."""
    owners = Owners(ledger)
    loads = orjson.loads
    start, end, tenant = result.start, result.end, result.tenant
    # Plain tuples with the request id as text: at ~8 us per usage event, a Row and
    # a UUID per row would be a third of the work.
    for found in pages(ledger, after, stop, only=USAGE_TOPICS, text_ids=True):
        for position, request_id, version, topic, state in found:
            f = loads(state)
            if topic == _RECEIVED:
                owners.received(request_id, f)
                continue
            if progress is not None:
                progress(position)
            at = timestamp(f)
            if not start <= at < end:
                continue
            owner = owners.of(request_id)
            if owner is None:
                result.unattributed += 1
                continue
            if tenant is not None and owner[0] != tenant:
                continue
            _replay_one(result, f"{request_id}/{version}", owner, f, at, corrected)


def _replay_one(result: Plan, event_id: str, owner: tuple[str, str], f: dict[str, Any], at: datetime,
                corrected: dict[str, str]) -> None:
    result.scanned += 1
    text = corrected.get(event_id) if corrected else None  # no earlier runs: no event id to look up
    old = Decimal(f["cost"] if text is None else text)
    model = f["model"]
    price = result.book.prices.get(model)
    if price is None:
        result.unpriced += 1
        new = old
    else:
        new = price.cost(f["input_tokens"], f["output_tokens"], f["cached_tokens"], f.get("images", 0))
    line = result.lines[(owner[0], model)]
    line.events += 1
    line.old_cost += old
    line.new_cost += new
    if new != old:
        key = (owner[0], owner[1], model, at.date().isoformat())
        # `new` is the book's cost, already on the quantum; `old` is as stored, so it is
        # put on it (a hand-made ledger may say "0.1").
        result.corrections[key].append([event_id, money_text(old), format(new, "f")])


@dataclass(frozen=True, slots=True)
class Applied:
    run_id: str
    already: bool  # the run had been applied before: nothing was recorded now
    events: int  # usage events corrected by the run
    deltas: dict[str, str]  # tenant -> delta, as recorded


def apply(ledger: Any, result: Plan) -> Applied:
    """Record the plan (see the module's docstring); idempotent per run id."""
    recorded = _recorded(ledger, result.run_id)
    if recorded is not None:
        return recorded
    run = RepricingRun(run_id=result.run_id, price_book=result.book.version, prices=result.prices,
                       window_from=result.start.isoformat(), window_to=result.end.isoformat(), tenant=result.tenant)
    for (tenant, key_id, model, day), corrections in sorted(result.corrections.items()):
        for chunk_start in range(0, len(corrections), MAX_CORRECTIONS_PER_EVENT):
            chunk = corrections[chunk_start:chunk_start + MAX_CORRECTIONS_PER_EVENT]
            run.reprice(run_id=result.run_id, tenant=tenant, key_id=key_id, model=model, day=day,
                        price_book=result.book.version, corrections=chunk,
                        old_cost=money_text(sum((Decimal(c[1]) for c in chunk), ZERO)),
                        new_cost=money_text(sum((Decimal(c[2]) for c in chunk), ZERO)))
    deltas = {t: d for t, d in result.deltas().items() if d != ZERO}
    run.finish(events=result.changed, deltas={t: money_text(d) for t, d in sorted(deltas.items())})
    tenants = []
    for name, delta in sorted(deltas.items()):
        tenant = ledger.find_tenant(name)
        if tenant is None:
            continue
        tenant.adjust_balance(amount=money_text(-delta), reason=f"re-pricing run {result.run_id} with price book "
                              f"{result.book.version}", corrects="reprice:" + result.run_id)
        tenants.append(tenant)
    try:
        ledger.save(run, *tenants)
    except IntegrityError:  # the same run, applied at the same moment by someone else
        recorded = _recorded(ledger, result.run_id)
        if recorded is None:
            raise
        return recorded
    return Applied(result.run_id, False, result.changed, {t: money_text(d) for t, d in sorted(deltas.items())})


def _recorded(ledger: Any, run_id: str) -> Applied | None:
    try:
        run = ledger.repository.get(RepricingRun.create_id(run_id))
    except AggregateNotFoundError:
        return None
    return Applied(run_id, True, run.corrected, dict(run.deltas))


def corrected_event_ids(ledger: Any, run_id: str) -> list[str]:
    """The usage events a recorded run corrected (for audit and tests)."""
    found = []
    for event in ledger.events.get(RepricingRun.create_id(run_id)):
        if isinstance(event, RepricingRun.UsageRepriced):
            found += [c[0] for c in event.corrections]
    return found

