"""`twoapi`: the command line (serve, simulate, keys, tenants, credits, ledger, migrate)."""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal, InvalidOperation

import orjson

from gateway.config import Settings
from ledger.application import Ledger
from ledger.ids import parse_request_id


def _ledger() -> Ledger:
    settings = Settings.from_env()
    return Ledger.open(settings.database_url, settings.data_dir)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    return serve(args.host, args.port, args.workers, args.simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulator.app import serve

    print(f"provider simulator on http://{args.host}:{args.port}", flush=True)
    serve(args.host, args.port)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    ledger = _ledger()
    if ledger.find_tenant(args.tenant) is None:
        ledger.create_tenant(args.tenant)
        print(f"created tenant {args.tenant}", file=sys.stderr)
    issued = ledger.issue_key(args.tenant, label=args.label)
    print(orjson.dumps({"key": issued.secret, "key_id": issued.key_id, "prefix": issued.prefix,
                        "tenant": issued.tenant}).decode())
    print("The key is shown once; only its hash is stored.", file=sys.stderr)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    _ledger().revoke_key(args.key_id, reason=args.reason)
    print(f"revoked {args.key_id}")
    return 0


def cmd_tenants_create(args: argparse.Namespace) -> int:
    try:
        _ledger().create_tenant(args.name)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"created tenant {args.name}")
    return 0


def cmd_credits_add(args: argparse.Namespace) -> int:
    try:
        amount = Decimal(args.amount)
    except InvalidOperation:
        print(f"not an amount: {args.amount}", file=sys.stderr)
        return 2
    _ledger().add_credits(args.tenant, amount, reference=args.reference)
    print(f"added {amount} USD to {args.tenant}")
    return 0


def _request_events(request_id: str) -> list[dict] | int:
    """A request's events, or the exit status to return when there are none."""
    try:
        request_uuid = parse_request_id(request_id)
    except ValueError:
        print(f"not a request id: {request_id}", file=sys.stderr)
        return 2
    events = _ledger().event_dicts(request_uuid)
    if not events:
        print(f"no events for {request_id}", file=sys.stderr)
        return 1
    return events


def cmd_ledger_show(args: argparse.Namespace) -> int:
    events = _request_events(args.request_id)
    if isinstance(events, int):
        return events
    for event in events:
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
    return 0


def cmd_ledger_explain(args: argparse.Namespace) -> int:
    from ledger.explain import explain

    events = _request_events(args.request_id)
    if isinstance(events, int):
        return events
    print(explain(events))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    _ledger()  # opening the ledger creates its tables when missing
    print("ledger tables are in place")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twoapi", description="2api LLM gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--simulate", action="store_true", help="serve simulated providers (no keys needed)")
    serve.add_argument("--host", default=os.environ.get("TWOAPI_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080))
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    simulate = commands.add_parser("simulate", help="run the provider simulator")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=9090)
    simulate.set_defaults(func=cmd_simulate)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="issue a key (creates the tenant if needed)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--label", default="")
    create.set_defaults(func=cmd_keys_create)
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.add_argument("--reason", default="")
    revoke.set_defaults(func=cmd_keys_revoke)

    tenants = commands.add_parser("tenants", help="tenants").add_subparsers(dest="action", required=True)
    tenant_create = tenants.add_parser("create")
    tenant_create.add_argument("name")
    tenant_create.set_defaults(func=cmd_tenants_create)

    credits = commands.add_parser("credits", help="credits").add_subparsers(dest="action", required=True)
    add = credits.add_parser("add")
    add.add_argument("--tenant", required=True)
    add.add_argument("--amount", required=True, help="USD, e.g. 25.00")
    add.add_argument("--reference", default="", help="e.g. an invoice id")
    add.set_defaults(func=cmd_credits_add)

    ledger = commands.add_parser("ledger", help="read the ledger").add_subparsers(dest="action", required=True)
    show = ledger.add_parser("show", help="a request's events, as JSON lines")
    show.add_argument("request_id")
    show.set_defaults(func=cmd_ledger_show)
    explain = ledger.add_parser("explain", help="a request's routing and attempts, in words")
    explain.add_argument("request_id")
    explain.set_defaults(func=cmd_ledger_explain)

    migrate = commands.add_parser("migrate", help="create the ledger's tables")
    migrate.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
