"""`twoapi` commands for tenants, keys, credits, limits, price books, provider keys and
projections: the Admin API's operations from the command line (gateway/cli.py adds
them to its parser). Writes are ledger events; reads come from the tenancy
projection, brought up to date first (run here for a moment when no gateway or
`twoapi projections run` is following the ledger).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from gateway.config import PROVIDER_ENV, Settings
from gateway.routing_cli import add_routing_commands
from ledger.accounts import money_text
from ledger.application import Ledger


def _open() -> tuple[Settings, Ledger]:
    settings = Settings.from_env()
    return settings, Ledger.open(settings.database_url, settings.data_dir)


def _view(settings: Settings, ledger: Ledger) -> Any:
    from ledger.projections.runner import catch_up, open_view

    view = open_view(settings.database_url, settings.data_dir)
    if not catch_up(settings.database_url, settings.data_dir, ledger, view, timeout=30):
        print("warning: the projection is behind the ledger; figures may be stale", file=sys.stderr)
    return view


def _print(item: Any) -> None:
    sys.stdout.write(orjson.dumps(item, default=str).decode() + "\n")


def _fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def _month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


# -- tenants ---------------------------------------------------------------------------


def cmd_tenants_list(args: argparse.Namespace) -> int:
    settings, ledger = _open()
    for tenant in _view(settings, ledger).tenants():
        _print(tenant)
    return 0


def cmd_tenants_show(args: argparse.Namespace) -> int:
    settings, ledger = _open()
    detail = _view(settings, ledger).tenant(args.name, _month())
    if detail is None:
        return _fail(f"no tenant {args.name}")
    _print(detail)
    return 0


def cmd_tenants_suspend(args: argparse.Namespace) -> int:
    try:
        _open()[1].suspend_tenant(args.name, reason=args.reason)
    except ValueError as error:
        return _fail(str(error))
    print(f"suspended {args.name} (its keys stop working within a second or two)")
    return 0


def cmd_tenants_reactivate(args: argparse.Namespace) -> int:
    try:
        _open()[1].reactivate_tenant(args.name, reason=args.reason)
    except ValueError as error:
        return _fail(str(error))
    print(f"reactivated {args.name}")
    return 0


# -- keys ------------------------------------------------------------------------------


def cmd_keys_list(args: argparse.Namespace) -> int:
    settings, ledger = _open()
    if ledger.find_tenant(args.tenant) is None:
        return _fail(f"no tenant {args.tenant}")
    for key in _view(settings, ledger).keys(args.tenant):
        _print(key)
    return 0


# -- credits ---------------------------------------------------------------------------


def cmd_credits_list(args: argparse.Namespace) -> int:
    settings, ledger = _open()
    if ledger.find_tenant(args.tenant) is None:
        return _fail(f"no tenant {args.tenant}")
    view = _view(settings, ledger)
    kind = None if args.all else "credit"
    for entry in view.entries(args.tenant, kind, "tenant:" + args.tenant):
        _print({**entry, "amount": money_text(entry["amount"]), "at": entry["at"].isoformat()})
    return 0


def cmd_credits_adjust(args: argparse.Namespace) -> int:
    amount = _decimal(args.amount)
    if amount is None:
        return _fail(f"not an amount: {args.amount}", 2)
    try:
        _open()[1].adjust_balance(args.tenant, amount, reason=args.reason, corrects=args.corrects)
    except ValueError as error:
        return _fail(str(error))
    print(f"adjusted {args.tenant} by {amount} USD")
    return 0


# -- limits ----------------------------------------------------------------------------


def cmd_limits(args: argparse.Namespace) -> int:
    _, ledger = _open()
    if bool(args.tenant) == bool(args.key):
        return _fail("give --tenant NAME or --key KEY_ID", 2)
    try:
        if args.tenant:
            tenant = ledger.find_tenant(args.tenant)
            if tenant is None:
                return _fail(f"no tenant {args.tenant}")
            if args.models is not None:
                return _fail("--models applies to keys", 2)
            rpm, tpm = _keep(args.rpm, tenant.rpm), _keep(args.tpm, tenant.tpm)
            cap = tenant.monthly_cap if args.monthly_cap is None else (
                None if args.monthly_cap == "none" else args.monthly_cap)
            if (args.rpm, args.tpm, args.monthly_cap) != (None, None, None):
                cap_amount = None if cap is None else _decimal(cap)
                if cap is not None and cap_amount is None:
                    return _fail(f"not an amount: {cap}", 2)
                tenant = ledger.set_tenant_limits(args.tenant, rpm, tpm, cap_amount)
            _print({"tenant": args.tenant, "rpm": tenant.rpm, "tpm": tenant.tpm, "monthly_cap": tenant.monthly_cap})
        else:
            key = ledger.get_key(args.key)
            if key is None:
                return _fail(f"no key {args.key}")
            if args.monthly_cap is not None:
                return _fail("--monthly-cap applies to tenants", 2)
            rpm, tpm = _keep(args.rpm, key.rpm), _keep(args.tpm, key.tpm)
            models = key.allowed_models if args.models is None else (
                None if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()])
            if (args.rpm, args.tpm, args.models) != (None, None, None):
                key = ledger.set_key_limits(args.key, rpm, tpm, models)
            _print({"key_id": args.key, "tenant": key.tenant, "rpm": key.rpm, "tpm": key.tpm,
                    "allowed_models": key.allowed_models})
    except ValueError as error:
        return _fail(str(error), 2)
    return 0


def _keep(flag: str | None, current: int | None) -> int | None:
    if flag is None:
        return current
    if flag == "none":
        return None
    try:
        return int(flag)
    except ValueError:
        raise ValueError(f"not a whole number: {flag}") from None


# -- price books -------------------------------------------------------------------------


def cmd_price_books_publish(args: argparse.Namespace) -> int:
    from adapters.catalog import default_catalog
    from ledger.price_books import PriceBookError, parse_prices, parse_time

    try:
        table = orjson.loads(Path(args.file).read_bytes() if args.file != "-" else sys.stdin.buffer.read())
        prices = parse_prices(table.get("prices", table) if isinstance(table, dict) else table)
        effective = parse_time(args.effective_at) if args.effective_at else datetime.now(UTC)
    except (OSError, orjson.JSONDecodeError, PriceBookError) as error:
        return _fail(str(error), 2)
    catalog = default_catalog()
    canonical = {}
    for model, row in prices.items():
        info = catalog.find(model)
        if info is None:
            return _fail(f"{model} is not a model of the catalog", 2)
        canonical[info.id] = row
    try:
        version = _open()[1].publish_price_book(canonical, effective.isoformat(), args.version, args.note)
    except ValueError as error:
        return _fail(str(error))
    _print({"version": version, "effective_at": effective.isoformat(), "models": len(canonical)})
    return 0


def cmd_price_books_list(args: argparse.Namespace) -> int:
    from adapters.catalog import default_catalog
    from ledger.price_books import PriceBooks
    from ledger.pricing import PriceBook

    _, ledger = _open()
    books = PriceBooks(PriceBook.from_table({m.id: m.price for m in default_catalog().models}))
    books.refresh(ledger)
    now = datetime.now(UTC).timestamp()
    _print({"base": books.base.version, "in_force": books.in_force(now).version})
    for version in books.versions:
        _print(version.as_dict())
    return 0


# -- provider keys -------------------------------------------------------------------------


def cmd_provider_keys_set(args: argparse.Namespace) -> int:
    from ledger.credentials import CredentialCipher, MasterKeyError

    if args.provider not in PROVIDER_ENV:
        return _fail(f"provider is one of {', '.join(PROVIDER_ENV)}", 2)
    settings, ledger = _open()
    try:
        cipher = CredentialCipher.from_env(settings.master_key)
    except MasterKeyError as error:
        return _fail(str(error), 2)
    if args.from_env:
        secret = os.environ.get(args.from_env, "")
    elif sys.stdin.isatty():
        secret = getpass.getpass(f"{args.provider} API key for {args.tenant}: ")
    else:
        secret = sys.stdin.readline()
    secret = secret.strip()
    if not secret:
        return _fail("no key given (stdin, or --from-env VAR)", 2)
    try:
        ledger.set_provider_key(args.tenant, args.provider, cipher.seal(args.tenant, args.provider, secret))
    except ValueError as error:
        return _fail(str(error))
    print(f"stored {args.tenant}'s {args.provider} key (encrypted; it is never shown again)")
    return 0


def cmd_provider_keys_remove(args: argparse.Namespace) -> int:
    _, ledger = _open()
    removed = ledger.remove_provider_key(args.tenant, args.provider, reason="removed with the CLI")
    print(f"removed {args.tenant}'s {args.provider} key" if removed else "no such key")
    return 0 if removed else 1


def cmd_provider_keys_rotate(args: argparse.Namespace) -> int:
    """Re-seal every stored provider key under the current master key (see
    ledger/credentials.py): run after giving every gateway TWOAPI_MASTER_KEY=<new> and
    TWOAPI_MASTER_KEY_PREVIOUS=<old>; when it reports nothing left under an earlier key,
    TWOAPI_MASTER_KEY_PREVIOUS can be removed."""
    from ledger.credentials import CredentialCipher, MasterKeyError, rotate_provider_keys

    settings, ledger = _open()
    try:
        cipher = CredentialCipher.from_env(settings.master_key)
    except MasterKeyError as error:
        return _fail(str(error), 2)
    report = rotate_provider_keys(ledger, cipher, apply=not args.dry_run)
    due = "due" if args.dry_run else "rotated"
    for outcome, names in ((due, report.rotated), ("current", report.current), ("unreadable", report.unreadable)):
        for tenant, provider in names:
            _print({"tenant": tenant, "provider": provider, "outcome": outcome})
    verb = "would re-seal" if args.dry_run else "re-sealed"
    print(f"{verb} {len(report.rotated)} provider key(s) under master key {report.key_id}; "
          f"{len(report.current)} already under it; {len(report.unreadable)} open under no configured key "
          "(left as they are)", file=sys.stderr)
    if report.unreadable:
        return 1
    if not args.dry_run:
        print("every stored provider key now opens under TWOAPI_MASTER_KEY alone: once every gateway runs with it, "
              "TWOAPI_MASTER_KEY_PREVIOUS can be removed", file=sys.stderr)
    return 0


# -- projections -------------------------------------------------------------------------------


def cmd_projections_status(args: argparse.Namespace) -> int:
    from ledger.projections.runner import close_view, open_view, status

    settings, ledger = _open()
    view = open_view(settings.database_url, settings.data_dir)
    try:
        _print(status(ledger, view).as_dict())
    finally:
        close_view(view)
    _print(_analytics_status(settings))  # one line per projection
    return 0


def _analytics_status(settings: Settings) -> dict[str, Any]:
    """The analytics projection's line (analytics/admin.py): from its store, or from the
    gateway when the store is held; off or unavailable said as such."""
    from analytics.admin import cli_projection_line

    gateway = os.environ.get("TWOAPI_GATEWAY_URL") or f"http://127.0.0.1:{settings.port}"
    return cli_projection_line(settings.data_dir, settings.database_url, gateway, settings.admin_token)


def cmd_projections_rebuild(args: argparse.Namespace) -> int:
    """Drop a projection's rows and replay it from the ledger's first event: the
    tenancy projection here and now; the analytics tables are emptied and refilled by
    the analytics projection wherever it runs."""
    from ledger.projections.runner import close_view, rebuild, status

    settings, ledger = _open()
    if args.name in ("tenancy", None):
        try:
            rebuild(settings.database_url, settings.data_dir)
        except RuntimeError as error:
            return _fail(str(error))
        print("tenancy projection cleared; rebuilding from the first event", file=sys.stderr)
        view = _view(settings, ledger)
        try:
            _print(status(ledger, view).as_dict())
        finally:
            close_view(view)
    if args.name in ("analytics", None):
        from analytics.admin import rebuild as rebuild_analytics
        from analytics.config import AnalyticsConfig

        config = AnalyticsConfig.from_env(settings.data_dir)
        if config.role == "off" and args.name is None:
            return 0
        rebuild_analytics(config)
        print("analytics tables emptied; the analytics projection ships the ledger again from its first event",
              file=sys.stderr)
    return 0


def cmd_projections_run(args: argparse.Namespace) -> int:
    from ledger.projections.runner import ProjectionWorker

    settings = Settings.from_env()
    worker = ProjectionWorker(settings.database_url, settings.data_dir)
    print("running the tenancy projection (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        worker.stop()
    return 0


def migrate_projections() -> list[str]:
    """Create or migrate the projection tables; the migrations applied now."""
    from ledger.projections.migrate import applied
    from ledger.projections.runner import close_view, open_view

    settings = Settings.from_env()
    view = open_view(settings.database_url, settings.data_dir)  # migrates on opening
    try:
        return [f"{version:04d}_{name}" for version, name, _ in applied(view.datastore, view.dialect, view.schema)]
    finally:
        close_view(view)


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


# -- the parser ------------------------------------------------------------------------------


def add_tenancy_commands(commands: Any, keys: Any, tenants: Any, credits: Any) -> None:
    """Add the subcommands to `twoapi`'s parser (and to its keys/tenants/credits groups)."""
    tenants.add_parser("list", help="every tenant, with status, limits, balance").set_defaults(func=cmd_tenants_list)
    show = tenants.add_parser("show", help="one tenant: status, limits, balance, month's spend, keys")
    show.add_argument("name")
    show.set_defaults(func=cmd_tenants_show)
    for name, func in (("suspend", cmd_tenants_suspend), ("reactivate", cmd_tenants_reactivate)):
        action = tenants.add_parser(name, help=f"{name} a tenant (all its keys)")
        action.add_argument("name")
        action.add_argument("--reason", default="")
        action.set_defaults(func=func)

    listing = keys.add_parser("list", help="a tenant's keys: prefix, label, status, limits, created, last used")
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(func=cmd_keys_list)

    credit_list = credits.add_parser("list", help="a tenant's credits (--all: every entry of its account)")
    credit_list.add_argument("--tenant", required=True)
    credit_list.add_argument("--all", action="store_true")
    credit_list.set_defaults(func=cmd_credits_list)
    adjust = credits.add_parser("adjust", help="correct a balance (signed amount) with a reason")
    adjust.add_argument("--tenant", required=True)
    adjust.add_argument("--amount", required=True, help="USD, signed, e.g. -1.25")
    adjust.add_argument("--reason", required=True)
    adjust.add_argument("--corrects", default="", help="what is corrected, e.g. a request id")
    adjust.set_defaults(func=cmd_credits_adjust)

    limits = commands.add_parser("limits", help="show or set the limits of a tenant or a key")
    limits.add_argument("--tenant")
    limits.add_argument("--key", help="a key id")
    limits.add_argument("--rpm", help="requests per minute, or 'none'")
    limits.add_argument("--tpm", help="tokens per minute, or 'none'")
    limits.add_argument("--monthly-cap", help="tenant: USD per calendar month (UTC), or 'none'")
    limits.add_argument("--models", help="key: comma-separated model ids it may use, or 'all'")
    limits.set_defaults(func=cmd_limits)

    books = commands.add_parser("price-books", help="published price books").add_subparsers(
        dest="action", required=True)
    publish = books.add_parser("publish", help="publish a version from a JSON file {model: {unit: price}}")
    publish.add_argument("file", help="JSON file ('-' for stdin)")
    publish.add_argument("--effective-at", help="ISO 8601 time (default: now)")
    publish.add_argument("--version", help="version name (default: v<n>)")
    publish.add_argument("--note", default="")
    publish.set_defaults(func=cmd_price_books_publish)
    books.add_parser("list", help="the versions and which is in force").set_defaults(func=cmd_price_books_list)

    provider_keys = commands.add_parser("provider-keys", help="tenants' own provider keys (encrypted)"
                                        ).add_subparsers(dest="action", required=True)
    set_key = provider_keys.add_parser("set", help="store a tenant's key (read from stdin, or --from-env)")
    set_key.add_argument("--tenant", required=True)
    set_key.add_argument("--provider", required=True, choices=sorted(PROVIDER_ENV))
    set_key.add_argument("--from-env", help="read the key from this environment variable")
    set_key.set_defaults(func=cmd_provider_keys_set)
    remove = provider_keys.add_parser("remove", help="stop using a tenant's own key")
    remove.add_argument("--tenant", required=True)
    remove.add_argument("--provider", required=True, choices=sorted(PROVIDER_ENV))
    remove.set_defaults(func=cmd_provider_keys_remove)
    rotate = provider_keys.add_parser(
        "rotate", help="re-seal every stored key under TWOAPI_MASTER_KEY (those that open only under "
                       "TWOAPI_MASTER_KEY_PREVIOUS), one Replaced event each")
    rotate.add_argument("--dry-run", action="store_true", help="only report which keys are due")
    rotate.set_defaults(func=cmd_provider_keys_rotate)

    add_routing_commands(commands)  # twoapi routing show|set (gateway/routing_cli.py)

    projections = commands.add_parser("projections", help="the SQL projections of the ledger").add_subparsers(
        dest="action", required=True)
    projections.add_parser("status", help="position and lag").set_defaults(func=cmd_projections_status)
    rebuild = projections.add_parser("rebuild", help="clear and rebuild from the first event")
    rebuild.add_argument("name", nargs="?", choices=("tenancy", "analytics"),
                         help="one projection (default: each one in use)")
    rebuild.set_defaults(func=cmd_projections_rebuild)
    projections.add_parser("run", help="follow the ledger (a projection worker process)").set_defaults(
        func=cmd_projections_run)
