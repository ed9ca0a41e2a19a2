"""`twoapi ledger verify`: everything derived from the ledger, checked against the ledger.

One pass over every stored event (scan.Row, in notification order) checks:

* tamper evidence: each sealed event's stored row still has the digest its seal
  recorded, no sealed row is missing, no row appeared inside a sealed range, and the
  seals chain (seal.py);
* invariants: each request has exactly one terminal event (`Completed` or
  `Failed`); each `UsageMetered` names a price-book version published before it and
  in force by its time, and its cost is what that version's prices give for its
  tokens (so no cost without usage and no usage without cost); each re-pricing
  correction names a metered event and the cost it had; each applied re-pricing run
  moved each tenant's balance by exactly its usage delta;
* and recomputes from the events alone every account balance (ledger/accounts.py),
  the sum of each account's projected entries, the daily usage totals and monthly
  spend, comparing them with the tenancy projection and, when given, the analytics
  totals per tenant.

Each problem is a `Finding` naming what it concerns (an event id, an account, a
usage row); the report is clean when there are none.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from ledger.accounts import postings
from ledger.audit.scan import Owners, Row, rows, timestamp
from ledger.audit.seal import LEAF_HEX, Seal, seals
from ledger.events import PriceBook, RepricingRun, Request, Tenant
from ledger.price_books import book_of, parse_time
from ledger.pricing import PriceBook as Book
from ledger.projections.views import UsageDelta
from ledger.repricing import current_costs

ZERO = Decimal(0)
RECENT_TERMINALS = 100_000
REPRICE_PREFIX = "reprice:"  # BalanceAdjusted.corrects of a re-pricing run


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # tamper | invariant | balance | entries | usage | spend | analytics
    subject: str  # what it concerns: an event id, an account, a usage row
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail}"


def _usage_tuple(u: UsageDelta) -> tuple[int, int, int, int, int, Decimal]:
    return (u.requests, u.input_tokens, u.output_tokens, u.cached_tokens, u.estimated, u.cost)


UsageKey = tuple[str, date, str, str]  # tenant, day (UTC), key id, model
AnalyticsTotals = tuple[Decimal, int, int, int]  # cost, input, output, cached tokens
NO_USAGE: AnalyticsTotals = (Decimal(0), 0, 0, 0)


@dataclass(slots=True)
class Report:
    findings: list[Finding] = field(default_factory=list)
    events: int = 0
    sealed: int = 0
    unsealed: int = 0
    seals: int = 0
    head: str = ""  # the newest seal's chain hash
    requests: int = 0
    usage_events: int = 0
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(check, subject, detail))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "events": self.events, "requests": self.requests, "usage_events": self.usage_events,
            "sealed": self.sealed, "unsealed": self.unsealed, "seals": self.seals, "head": self.head,
            "checked": self.checked,
            "findings": [{"check": f.check, "subject": f.subject, "detail": f.detail} for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class Scope:
    """What to compare: one tenant or all, usage days in [start, end) or all."""

    tenant: str | None = None
    start: date | None = None
    end: date | None = None

    def tenant_in(self, tenant: str | None) -> bool:
        return self.tenant is None or tenant == self.tenant

    def day_in(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day < self.end)

    def account_in(self, account: str) -> bool:
        return self.tenant is None or account == "tenant:" + self.tenant


def _event(cls: type, row: Row, fields: dict[str, Any]) -> Any:
    """A domain event object from stored fields, without the mapper (the rules in
    ledger/accounts.py dispatch on the class)."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields, originator_id=row.originator_id, originator_version=row.version)
    return obj


class _TamperCheck:
    """Walks the seals' positions beside the stored rows (both in position order)."""

    def __init__(self, all_seals: list[Seal], report: Report) -> None:
        self.report = report
        self.expected: Iterator[tuple[Seal, int, int]] = (
            (seal, index, position) for seal in all_seals for index, position in enumerate(seal.positions)
        )
        self.sealed_up_to = all_seals[-1].last if all_seals else 0
        self.ranges = [(s.first, s.last) for s in all_seals]
        self.pending = next(self.expected, None)
        self.digests: dict[int, list[bytes]] = defaultdict(list)  # seal version -> digests seen
        self.named: set[int] = set()  # seals with an event already reported
        self._check_chain(all_seals)

    def _check_chain(self, all_seals: list[Seal]) -> None:
        previous = ""
        for seal in all_seals:
            subject = f"seal {seal.version} (events {seal.first}..{seal.last})"
            if seal.previous != previous:
                self.report.add("tamper", subject, "does not chain to the seal before it")
            if seal.chain != seal.expected_chain():
                self.report.add("tamper", subject, "its chain hash does not match its contents")
            if len(seal.positions) != seal.count or len(seal.leaves) != seal.count * LEAF_HEX:
                self.report.add("tamper", subject, "its lists do not have `count` entries")
            previous = seal.chain

    def row(self, row: Row) -> None:
        while self.pending is not None and self.pending[2] < row.position:
            self._missing(*self.pending)
            self.pending = next(self.expected, None)
        if self.pending is not None and self.pending[2] == row.position:
            seal, index, _ = self.pending
            digest = row.digest()
            self.digests[seal.version].append(digest)
            if digest.hex()[:LEAF_HEX] != seal.leaf(index):
                self.named.add(seal.version)
                self.report.add("tamper", f"event {row.event_id}",
                                f"stored row at position {row.position} ({_name(row.topic)}) was changed after "
                                f"seal {seal.version} recorded it")
            else:
                self.report.sealed += 1
            self.pending = next(self.expected, None)
            if self.pending is None or self.pending[0] is not seal:
                self._close(seal)
        elif row.position <= self.sealed_up_to and self._in_range(row.position):
            self.report.add("tamper", f"event {row.event_id}",
                            f"stored row at position {row.position} ({_name(row.topic)}) is inside a sealed range "
                            "but was not sealed")
        else:
            self.report.unsealed += 1

    def finish(self) -> None:
        while self.pending is not None:
            self._missing(*self.pending)
            self.pending = next(self.expected, None)

    def _missing(self, seal: Seal, index: int, position: int) -> None:
        self.named.add(seal.version)
        self.report.add("tamper", f"position {position}",
                        f"the event sealed at position {position} by seal {seal.version} is missing (deleted)")

    def _close(self, seal: Seal) -> None:
        digests = self.digests.pop(seal.version, [])
        if seal.version not in self.named and hashlib.sha256(b"".join(digests)).hexdigest() != seal.digest:
            self.report.add("tamper", f"seal {seal.version}", "the digest over its events does not match")

    def _in_range(self, position: int) -> bool:
        return any(first <= position <= last for first, last in self.ranges)


class _Replay:
    """The derived figures and invariants, recomputed from the events."""

    def __init__(self, base: Book, report: Report, ledger: Any, corrected: set[str]) -> None:
        self.report = report
        self.known_books: dict[str, Book] = {base.version: base}
        self.effective: dict[str, datetime] = {}  # published version -> in force from
        self.tenants: dict[UUID, str] = {}
        # Memory stays bounded by what is in flight, not by the ledger's size: a
        # request's events are stored together, so its owner and terminal are near.
        self.owners = Owners(ledger)
        self.open: set[UUID] = set()  # received, terminal not yet seen
        self.closed: OrderedDict[UUID, None] = OrderedDict()  # the latest terminals
        self.corrected = corrected  # usage events some re-pricing run corrects
        self.costs: dict[str, Decimal] = {}  # of those, the cost as it stands
        self.balances: dict[str, Decimal] = defaultdict(Decimal)
        self.usage: dict[UsageKey, UsageDelta] = defaultdict(UsageDelta)  # the projection's counters
        self.spend: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        self.tenant_costs: dict[str, Decimal] = defaultdict(Decimal)
        self.tenant_tokens: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # input, output, cached
        self.run_deltas: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (run, tenant) -> usage delta
        self.run_adjusted: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (run, tenant) -> balance move

    def row(self, row: Row) -> None:
        handler = self.HANDLERS.get(row.topic)
        if handler is not None:
            handler(self, row, row.fields())

    # -- handlers --------------------------------------------------------------------

    def _tenant_created(self, row: Row, f: dict[str, Any]) -> None:
        self.tenants[row.originator_id] = f["name"]

    def _money(self, row: Row, f: dict[str, Any]) -> None:
        cls = Tenant.CreditsAdded if row.topic == CREDITS_TOPIC else Tenant.BalanceAdjusted
        tenant = self.tenants.get(row.originator_id, "")
        self._post(_event(cls, row, f), tenant)
        corrects = f.get("corrects", "")
        if cls is Tenant.BalanceAdjusted and corrects.startswith(REPRICE_PREFIX):
            self.run_adjusted[(corrects.removeprefix(REPRICE_PREFIX), tenant)] += Decimal(f["amount"])

    def _published(self, row: Row, f: dict[str, Any]) -> None:
        self.known_books[f["version"]] = book_of(f["version"], f["prices"])
        self.effective[f["version"]] = parse_time(f["effective_at"])

    def _received(self, row: Row, f: dict[str, Any]) -> None:
        self.owners.received(row.originator_id, f)
        self.open.add(row.originator_id)
        self.report.requests += 1

    def _terminal(self, row: Row, f: dict[str, Any]) -> None:
        request = row.originator_id
        if request in self.open:
            self.open.discard(request)
            self.closed[request] = None
            if len(self.closed) > RECENT_TERMINALS:
                self.closed.popitem(last=False)
        elif request in self.closed or self.owners.of(request) is not None:
            self.report.add("invariant", f"request req_{request.hex}", "has more than one terminal event")
        else:
            self.report.add("invariant", f"request req_{request.hex}", "has a terminal event but no Received")

    def _usage(self, row: Row, f: dict[str, Any]) -> None:
        self.report.usage_events += 1
        owner = self.owners.of(row.originator_id)
        tenant = owner[0] if owner else None
        cost = Decimal(f["cost"])
        self._check_usage(row, f, cost)
        self._post(_event(Request.UsageMetered, row, f), tenant)
        if row.event_id in self.corrected:
            self.costs[row.event_id] = cost
        if owner is None:
            self.report.add("invariant", f"event {row.event_id}", "usage of a request with no Received event")
            return
        at = timestamp(f)
        totals = self.usage[(owner[0], at.date(), owner[1], f["model"])]
        totals.requests += 1
        totals.input_tokens += f["input_tokens"]
        totals.output_tokens += f["output_tokens"]
        totals.cached_tokens += f["cached_tokens"]
        totals.estimated += f["source"] == "estimated"
        totals.cost += cost
        self.spend[(owner[0], f"{at.year:04d}-{at.month:02d}")] += cost  # at.strftime("%Y-%m"), faster
        self.tenant_costs[owner[0]] += cost
        tokens = self.tenant_tokens[owner[0]]
        tokens[0] += f["input_tokens"]
        tokens[1] += f["output_tokens"]
        tokens[2] += f["cached_tokens"]

    def _repriced(self, row: Row, f: dict[str, Any]) -> None:
        run, tenant = f["run_id"], f["tenant"]
        delta = Decimal(f["new_cost"]) - Decimal(f["old_cost"])
        old_sum = new_sum = ZERO
        for event_id, before, after in f["corrections"]:
            current = self.costs.get(event_id)
            if current is None:
                self.report.add("invariant", f"event {row.event_id}",
                                f"re-pricing run {run} corrects {event_id}, which is not a usage event before it")
            elif current != Decimal(before):
                self.report.add("invariant", f"event {row.event_id}",
                                f"re-pricing run {run} says {event_id} cost {before}, but it cost {current}")
            self.costs[event_id] = Decimal(after)
            old_sum += Decimal(before)
            new_sum += Decimal(after)
        if (old_sum, new_sum) != (Decimal(f["old_cost"]), Decimal(f["new_cost"])):
            self.report.add("invariant", f"event {row.event_id}", "its cost totals are not the sums of its corrections")
        day = date.fromisoformat(f["day"])
        self.usage[(tenant, day, f["key_id"], f["model"])].cost += delta
        self.spend[(tenant, f["day"][:7])] += delta
        self.tenant_costs[tenant] += delta
        self.run_deltas[(run, tenant)] += delta

    # -- checks ------------------------------------------------------------------------

    def _check_usage(self, row: Row, f: dict[str, Any], cost: Decimal) -> None:
        subject = f"event {row.event_id}"
        version = f["price_book"]
        book = self.known_books.get(version)
        if book is None:
            self.report.add("invariant", subject, f"names price book {version}, not published before it")
            return
        effective = self.effective.get(version)
        if effective is not None and effective > timestamp(f):
            self.report.add("invariant", subject, f"names price book {version}, not yet in force at its time")
        tokens = f["input_tokens"] + f["output_tokens"] + f.get("images", 0)
        if cost and not tokens:
            self.report.add("invariant", subject, f"cost {cost} without usage")
            return
        price = book.prices.get(f["model"])
        if price is None:
            self.report.add("invariant", subject, f"price book {version} has no price for {f['model']}")
            return
        expected = price.cost(f["input_tokens"], f["output_tokens"], f["cached_tokens"], f.get("images", 0))
        if expected != cost:
            what = "usage without cost" if not cost else f"cost {cost}"
            self.report.add("invariant", subject, f"{what}; price book {version} gives {expected}")

    def finish(self) -> None:
        for request in self.open:
            self.report.add("invariant", f"request req_{request.hex}", "has no terminal event")
        for run, tenant in sorted(set(self.run_deltas) | set(self.run_adjusted)):
            delta, adjusted = self.run_deltas.get((run, tenant), ZERO), self.run_adjusted.get((run, tenant), ZERO)
            if delta + adjusted != ZERO:
                self.report.add("invariant", f"re-pricing run {run}",
                                f"moved {tenant}'s usage cost by {delta} but its balance by {adjusted}")

    def _post(self, event: Any, tenant: str | None) -> None:
        for account, amount, _, _ in postings(event, tenant):
            self.balances[account] += amount

    HANDLERS: dict[str, Callable[[_Replay, Row, dict[str, Any]], None]] = {}


CREDITS_TOPIC = get_topic(Tenant.CreditsAdded)
_Replay.HANDLERS = {
    get_topic(Tenant.Created): _Replay._tenant_created,
    CREDITS_TOPIC: _Replay._money,
    get_topic(Tenant.BalanceAdjusted): _Replay._money,
    get_topic(PriceBook.Published): _Replay._published,
    get_topic(Request.Received): _Replay._received,
    get_topic(Request.Completed): _Replay._terminal,
    get_topic(Request.Failed): _Replay._terminal,
    get_topic(Request.UsageMetered): _Replay._usage,
    get_topic(RepricingRun.UsageRepriced): _Replay._repriced,
}


# -- comparing with the projection ---------------------------------------------------


def _compare(report: Report, check: str, expected: dict[Any, Any], actual: dict[Any, Any], name: Callable[[Any], str],
             zero: Any) -> None:
    for key in sorted(set(expected) | set(actual), key=str):
        want, got = expected.get(key, zero), actual.get(key, zero)
        if want != got:
            report.add(check, name(key), f"events say {want}, projection says {got}")


def compare_projection(report: Report, replay: _Replay, view: Any, scope: Scope) -> None:
    report.checked.append("projection")
    balances = {a: v for a, v in replay.balances.items() if scope.account_in(a) and v != ZERO}
    projected = {a: v for a, v in view.balances().items() if scope.account_in(a) and v != ZERO}
    _compare(report, "balance", balances, projected, str, ZERO)
    entry_sums = {a: v for a, v in view.entry_sums().items() if scope.account_in(a) and v != ZERO}
    _compare(report, "entries", projected, entry_sums, lambda a: f"{a} (balance vs the sum of its entries)", ZERO)

    usage = {k: _usage_tuple(v) for k, v in replay.usage.items() if scope.tenant_in(k[0]) and scope.day_in(k[1])}
    rows_ = {
        (r["tenant"], r["day"], r["key_id"], r["model"]):
            (r["requests"], r["input_tokens"], r["output_tokens"], r["cached_tokens"], r["estimated"], r["cost"])
        for r in view.usage_all(scope.tenant, scope.start, scope.end)
    }
    _compare(report, "usage", usage, rows_, _usage_name, (0, 0, 0, 0, 0, ZERO))
    spend = {k: v for k, v in replay.spend.items() if scope.tenant_in(k[0])}
    _compare(report, "spend", spend, view.spend_all(scope.tenant), lambda k: f"{k[0]} in {k[1]}", ZERO)


def _usage_name(key: UsageKey) -> str:
    tenant, day, key_id, model = key
    return f"{tenant} {day} key {key_id} {model} (requests, input, output, cached, estimated, cost)"


def compare_analytics(report: Report, replay: _Replay, totals: dict[str, AnalyticsTotals], scope: Scope) -> None:
    """`totals`: per tenant, (cost, input, output, cached tokens) as the analytics store has them."""
    report.checked.append("analytics")
    expected = {t: (c, *replay.tenant_tokens[t]) for t, c in list(replay.tenant_costs.items()) if scope.tenant_in(t)}
    actual = {t: v for t, v in totals.items() if scope.tenant_in(t)}
    for tenant in sorted(set(expected) | set(actual)):
        want, got = expected.get(tenant, NO_USAGE), actual.get(tenant, NO_USAGE)
        if want != got:
            report.add("analytics", f"tenant {tenant}",
                       f"events say (cost, input, output, cached tokens) {_show(want)}, analytics says {_show(got)}")


def _show(totals: AnalyticsTotals) -> str:
    return "(" + ", ".join(str(v) for v in totals) + ")"


# -- the whole check ---------------------------------------------------------------------


def verify(ledger: Any, base: Book, view: Any | None = None, scope: Scope = Scope(),
           analytics_totals: dict[str, AnalyticsTotals] | None = None,
           progress: Callable[[int], None] | None = None) -> Report:
    """Check the ledger (see the module's docstring). `base` is the catalog's list-price
    book; `view` the tenancy projection (None: not compared)."""
    report = Report()
    all_seals = seals(ledger)
    report.seals = len(all_seals)
    report.head = all_seals[-1].chain if all_seals else ""
    report.checked += ["tamper", "invariants"]
    tamper = _TamperCheck(all_seals, report)
    replay = _Replay(base, report, ledger, set(current_costs(ledger)))  # usually few: read first
    for row in rows(ledger):
        report.events += 1
        tamper.row(row)
        try:
            replay.row(row)
        except (ValueError, KeyError, TypeError) as error:
            report.add("invariant", f"event {row.event_id}", f"cannot be read: {type(error).__name__} {error}")
        if progress is not None and report.events % 10_000 == 0:
            progress(10_000)
    tamper.finish()
    replay.finish()
    if view is not None:
        compare_projection(report, replay, view, scope)
    if analytics_totals is not None:
        compare_analytics(report, replay, analytics_totals, scope)
    return report


def _name(topic: str) -> str:
    return topic.rsplit(".", 1)[-1]


def parse_day(text: str | None) -> date | None:
    """A --from/--to bound: a date or a time (its UTC day)."""
    if text is None:
        return None
    at = parse_time(text)
    return at.date() if isinstance(at, datetime) else at
