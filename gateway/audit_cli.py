"""`twoapi` commands for finance audit: `ledger verify|seal|export` and `reprice`
(docs/audit.md). They read the ledger directly, as an auditor would; the tenancy
projection is brought up to date first where it is compared."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from gateway.config import Settings
from gateway.price_list import UnknownPriceBook, base_price_book, canonical_models, repricing_book
from ledger.application import Ledger
from ledger.price_books import PriceBookError, PriceBooks, parse_prices, parse_time


def _open() -> tuple[Settings, Ledger]:
    settings = Settings.from_env()
    return settings, Ledger.open(settings.database_url, settings.data_dir)


def _fail(message: str, code: int = 2) -> int:
    print(message, file=sys.stderr)
    return code


def _bounds(args: argparse.Namespace) -> tuple[datetime, datetime]:
    """--from (included) and --to (excluded): dates or ISO times, UTC; default all time."""
    start = parse_time(args.start) if args.start else datetime(1970, 1, 1, tzinfo=UTC)
    end = parse_time(args.end) if args.end else datetime.now(UTC) + timedelta(days=1)
    if end <= start:
        raise PriceBookError("--to must be after --from")
    return start, end


class _Progress:
    """A progress bar on stderr over notification positions, when stderr is a terminal."""

    def __init__(self, ledger: Ledger, what: str, enabled: bool) -> None:
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=ledger.recorder.max_notification_id() or 0, unit="ev", desc=what, file=sys.stderr)
        self._at = 0

    def to(self, position: int) -> None:
        if self.bar is not None and position - self._at >= 1000:
            self.bar.update(position - self._at)
            self._at = position

    def by(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- ledger verify / seal ------------------------------------------------------------


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from ledger.audit.verify import Scope, verify
    from ledger.projections.runner import catch_up, close_view, open_view

    settings, ledger = _open()
    try:
        start, end = _bounds(args)
    except PriceBookError as error:
        return _fail(str(error))
    scope = Scope(args.tenant, start.date() if args.start else None, end.date() if args.end else None)
    view = None
    if not args.no_projection:
        view = open_view(settings.database_url, settings.data_dir)
        if not catch_up(settings.database_url, settings.data_dir, ledger, view, timeout=60):
            print("warning: the projection is behind the ledger; differences may be lag", file=sys.stderr)
    analytics, note = _analytics_totals(args, settings)
    progress = _Progress(ledger, "verify", not args.json)
    try:
        report = verify(ledger, base_price_book(), view, scope, analytics, progress=progress.by)
    finally:
        progress.close()
        if view is not None:
            close_view(view)
    if args.json:
        sys.stdout.write(orjson.dumps({**report.as_dict(), "analytics": note}).decode() + "\n")
    else:
        _print_report(report, note)
    return 0 if report.ok else 1


def _print_report(report: Any, analytics_note: str) -> None:
    for finding in report.findings:
        print(f"MISMATCH {finding}")
    print(f"{report.events} events, {report.requests} requests, {report.usage_events} usage events; "
          f"{report.sealed} sealed by {report.seals} seals, {report.unsealed} not yet sealed")
    if report.head:
        print(f"seal chain head: {report.head}")
    print(f"checked: {', '.join(report.checked)}; analytics: {analytics_note}")
    print("OK" if report.ok else f"{len(report.findings)} mismatch(es)")


def _analytics_totals(args: argparse.Namespace, settings: Settings) -> tuple[dict[str, Any] | None, str]:
    """Cost and tokens per tenant from the analytics store through the gateway's Admin API,
    or why not."""
    if args.no_analytics:
        return None, "not compared (--no-analytics)"
    if not settings.admin_token:
        return None, "not compared (TWOAPI_ADMIN_TOKEN is not set)"
    import httpx

    gateway = args.gateway or f"http://127.0.0.1:{settings.port}"
    now = datetime.now(UTC)
    try:
        response = httpx.get(f"{gateway}/admin/analytics/totals",
                             params={"since": "1970-01-01T00:00:00Z", "until": (now + timedelta(days=1)).isoformat(),
                                     "limit": "10000"},
                             headers={"Authorization": f"Bearer {settings.admin_token}"}, timeout=30)
    except httpx.HTTPError as error:
        return None, f"not compared ({gateway} unreachable: {type(error).__name__})"
    if response.status_code != 200:
        return None, f"not compared ({gateway} answered {response.status_code})"
    totals = {row["tenant"]: (Decimal(str(row["cost"])), int(row["input_tokens"]), int(row["output_tokens"]),
                              int(row["cached_tokens"])) for row in response.json().get("data", [])}
    return totals, f"compared ({gateway})"


def cmd_ledger_seal(args: argparse.Namespace) -> int:
    from ledger.audit.seal import seal_pending

    _, ledger = _open()
    # Beside a running sealer (a gateway's projection worker) too: two sealers cannot
    # both seal a range, the second reads the first's seal.
    if not args.follow:
        print(f"sealed {seal_pending(ledger)} events")
        return 0
    print("sealing the ledger as it grows (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        while True:
            try:
                seal_pending(ledger)
            except Exception as error:  # the store is down: try again next time
                print(f"seal failed: {type(error).__name__}: {str(error)[:200]}", file=sys.stderr, flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


# -- ledger export ----------------------------------------------------------------------


def cmd_ledger_export(args: argparse.Namespace) -> int:
    from ledger.audit.export import FORMATS, export

    _, ledger = _open()
    try:
        start, end = _bounds(args)
    except PriceBookError as error:
        return _fail(str(error))
    if args.format not in FORMATS:
        return _fail(f"--format is one of {', '.join(FORMATS)}")
    out: Any
    if args.output in (None, "-"):
        if args.format == "parquet":
            return _fail("parquet is written to a file: give --output FILE")
        out = sys.stdout.buffer
    else:
        out = Path(args.output).open("wb")  # noqa: SIM115 (closed below; stdout is not ours to close)
    books = PriceBooks(base_price_book())
    books.refresh(ledger)
    try:
        totals = export(ledger, books, out, args.format, start, end, args.tenant)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    print(orjson.dumps(totals.as_dict()).decode(), file=sys.stderr)
    return 0


# -- reprice ------------------------------------------------------------------------------


def _book(ledger: Ledger, spec: str) -> tuple[Any, dict[str, dict[str, str]] | None]:
    """The book to re-price with: a file of {model: {unit: price}} (JSON, TOML or YAML),
    or the name of a published version (or the base version)."""
    path = Path(spec)
    if path.is_file():
        return repricing_book(ledger, prices=canonical_models(parse_prices(_load_table(path))))
    try:
        return repricing_book(ledger, spec)
    except UnknownPriceBook as error:
        raise PriceBookError(f"no file and {error}") from None


def _load_table(path: Path) -> Any:
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        return tomllib.loads(text)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    return orjson.loads(text)


def cmd_reprice(args: argparse.Namespace) -> int:
    from ledger.projections.runner import lease_for
    from ledger.repricing import apply, plan

    settings, ledger = _open()
    try:
        start, end = _bounds(args)
        book, prices = _book(ledger, args.price_book)
    except (PriceBookError, orjson.JSONDecodeError, ValueError) as error:
        return _fail(f"cannot re-price: {error}")
    lease = lease_for(settings.database_url, settings.data_dir, "reprice")
    if args.apply and not lease.acquire():
        return _fail("another re-pricing run is being applied; try again when it ends", 1)
    progress = _Progress(ledger, "re-pricing", args.format == "table")
    try:
        result = plan(ledger, book, start, end, args.tenant, prices, args.run_id, progress=progress.to,
                      workers=args.workers)
        progress.close()
        report = result.report()
        if args.apply:
            applied = apply(ledger, result)
            report["applied"] = {"run_id": applied.run_id, "already": applied.already, "events": applied.events,
                                 "deltas": applied.deltas}
    finally:
        progress.close()
        lease.release()
    _write_report(report, args.format)
    return 0


def _workers(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return count


def _write_report(report: dict[str, Any], form: str) -> None:
    writers: dict[str, Callable[[dict[str, Any]], None]] = {"table": _report_table, "json": _report_json,
                                                             "csv": _report_csv}
    writers[form](report)


def _report_json(report: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")


def _report_csv(report: dict[str, Any]) -> None:
    import csv

    writer = csv.writer(sys.stdout)
    writer.writerow(["tenant", "model", "events", "old_cost", "new_cost", "delta"])
    for line in report["lines"]:
        writer.writerow([line[c] for c in ("tenant", "model", "events", "old_cost", "new_cost", "delta")])
    total = report["total"]
    writer.writerow(["TOTAL", "", total["events"], total["old_cost"], total["new_cost"], total["delta"]])


def _report_table(report: dict[str, Any]) -> None:
    columns = ("tenant", "model", "events", "old_cost", "new_cost", "delta")
    body = [[str(line[c]) for c in columns] for line in report["lines"]]
    total = report["total"]
    body.append(["TOTAL", "", str(total["events"]), total["old_cost"], total["new_cost"], total["delta"]])
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(columns)]
    print(f"re-pricing with {report['price_book']} from {report['from']} to {report['to']}"
          f"{' for ' + report['tenant'] if report['tenant'] else ''} (run {report['run_id']})")
    print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths, strict=True))))
    for row in body:
        print("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    print(f"{report['events']} usage events, {report['changed']} change; {report['unpriced']} of models the book "
          f"does not price (kept), {report['unattributed']} unattributed (skipped)")
    applied = report.get("applied")
    if applied is None:
        print("dry run: nothing recorded (--apply records it)")
    elif applied["already"]:
        print(f"run {applied['run_id']} was applied before: nothing recorded now")
    else:
        print(f"applied as run {applied['run_id']}: {applied['events']} usage events corrected, "
              f"balances adjusted by {applied['deltas'] or 'nothing'} (charged more: positive)")


# -- the parser -----------------------------------------------------------------------------


def _window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", help="from this date or ISO time, UTC (included)")
    parser.add_argument("--to", dest="end", help="to this date or ISO time, UTC (excluded)")
    parser.add_argument("--tenant", help="only this tenant")


def add_audit_commands(commands: argparse._SubParsersAction, ledger: argparse._SubParsersAction) -> None:
    verify = ledger.add_parser("verify", help="recompute balances and usage from the events; check seals and "
                               "invariants (exit 1 on any mismatch)")
    _window(verify)
    verify.add_argument("--json", action="store_true", help="the report as JSON")
    verify.add_argument("--no-projection", action="store_true", help="do not compare with the projection")
    verify.add_argument("--no-analytics", action="store_true", help="do not compare with the analytics")
    verify.add_argument("--gateway", help="the gateway whose Admin API serves the analytics (default: "
                        "http://127.0.0.1:$PORT)")
    verify.set_defaults(func=cmd_ledger_verify)

    seal = ledger.add_parser("seal", help="seal the events stored since the last seal (tamper evidence)")
    seal.add_argument("--follow", action="store_true", help="keep sealing as the ledger grows")
    seal.add_argument("--interval", type=float, default=5.0, help="with --follow: seconds between seals")
    seal.set_defaults(func=cmd_ledger_seal)

    export = ledger.add_parser("export", help="billable items, credits and adjustments, one per line")
    _window(export)
    export.add_argument("--format", default="csv", help="csv, jsonl or parquet")
    export.add_argument("--output", "-o", help="a file (default: stdout; parquet needs a file)")
    export.set_defaults(func=cmd_ledger_export)

    reprice = commands.add_parser("reprice", help="replay usage through another price book (dry run unless "
                                  "--apply)")
    reprice.add_argument("--price-book", required=True, help="a price table file (JSON/TOML/YAML) or a "
                         "published version")
    _window(reprice)
    reprice.add_argument("--apply", action="store_true", help="record the run (balances, exports and analytics "
                         "follow); the same run applies once")
    reprice.add_argument("--run-id", help="name the run (default: derived from book, window and tenant)")
    reprice.add_argument("--format", default="table", choices=("table", "csv", "json"))
    reprice.add_argument("--workers", type=_workers, default=os.cpu_count() or 1,
                         help="processes replaying ranges of a PostgreSQL ledger side by side (default: one per "
                         "CPU; 1: in this process)")
    reprice.set_defaults(func=cmd_reprice)
