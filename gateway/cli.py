"""`twoapi`: the command line (serve, simulate, keys, tenants, credits, ledger, migrate)."""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import orjson

from gateway.audit_cli import add_audit_commands
from gateway.config import Settings
from gateway.tenancy_cli import add_tenancy_commands, migrate_projections
from ledger.application import Ledger
from ledger.ids import parse_request_id

if TYPE_CHECKING:
    from analytics.config import AnalyticsConfig


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
    try:
        if ledger.find_tenant(args.tenant) is None:
            ledger.create_tenant(args.tenant)
            print(f"created tenant {args.tenant}", file=sys.stderr)
        issued = ledger.issue_key(args.tenant, label=args.label)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    print(orjson.dumps({"key": issued.secret, "key_id": issued.key_id, "prefix": issued.prefix,
                        "tenant": issued.tenant}).decode())
    print("The key is shown once; only its hash is stored.", file=sys.stderr)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    try:
        _ledger().revoke_key(args.key_id, reason=args.reason)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
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
    if not amount.is_finite() or amount <= 0:
        print("credits are a positive amount (corrections: twoapi credits adjust)", file=sys.stderr)
        return 2
    try:
        _ledger().add_credits(args.tenant, amount, reference=args.reference)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
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
    applied = migrate_projections()  # migrations/<sqlite|postgres>/*.sql
    print("projection tables are in place (migrations: " + ", ".join(applied) + ")")
    return 0


# -- analytics, dashboards, demo (docs/analytics.md) --------------------------------


def _analytics_config() -> AnalyticsConfig:
    # Imported here, not at the top: chat-only commands need none of analytics.
    from analytics.config import AnalyticsConfig

    return AnalyticsConfig.from_env(Settings.from_env().data_dir)


def cmd_analytics_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from analytics.worker import run_worker

    settings = Settings.from_env()
    config = replace(_analytics_config(), role="owner")
    return run_worker(config, settings.database_url, settings.admin_token, args.host, args.port, args.parent_pid)


def cmd_analytics_status(args: argparse.Namespace) -> int:
    from analytics.admin import status
    from analytics.store import StoreUnavailable

    settings = Settings.from_env()
    gateway = args.gateway or f"http://127.0.0.1:{settings.port}"
    try:
        report = status(_analytics_config(), settings.database_url, gateway, settings.admin_token)
    except StoreUnavailable as error:
        print(f"analytics status unavailable: {error}", file=sys.stderr)
        return 1
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_analytics_migrate(args: argparse.Namespace) -> int:
    from analytics.admin import migrate_store

    applied = migrate_store(_analytics_config())
    print("applied: " + ", ".join(applied) if applied else "analytics tables are up to date")
    return 0


def cmd_analytics_rebuild(args: argparse.Namespace) -> int:
    from analytics.admin import rebuild

    rebuild(_analytics_config())
    print("analytics tables emptied; the projection ships the ledger again from its first event")
    return 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    from pathlib import Path

    app = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
    settings = Settings.from_env()
    env = {**os.environ, "TWOAPI_GATEWAY_URL": args.gateway or f"http://127.0.0.1:{settings.port}"}
    if not env.get("TWOAPI_ADMIN_TOKEN"):
        print("TWOAPI_ADMIN_TOKEN is not set: the dashboards read the gateway's admin API with it", file=sys.stderr)
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
               "--server.address", args.host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "viewer"]
    print(f"dashboards on http://{args.host}:{args.port} (reading {env['TWOAPI_GATEWAY_URL']})", flush=True)
    # Become streamlit rather than wait for it: signals (Ctrl-C, SIGTERM from a
    # supervisor) then reach the server itself, and no orphan is left behind.
    os.execve(sys.executable, command, env)
    return 0  # not reached


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo, run_traffic_only

    if args.traffic:
        gateway = args.gateway or f"http://127.0.0.1:{Settings.from_env().port}"
        return run_traffic_only(gateway, args.simulator, args.duration, args.rate)
    return run_demo(args.port, args.dashboards_port, args.duration, args.rate, not args.no_dashboards)


def add_analytics_commands(commands: argparse._SubParsersAction) -> None:
    analytics = commands.add_parser("analytics", help="the ClickHouse analytics store and its projection")
    actions = analytics.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="run the analytics projection (and, with --port, its query API)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=None, help="serve the gateway workers' queries on this port")
    run.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # set by `twoapi serve`
    run.set_defaults(func=cmd_analytics_run)
    status = actions.add_parser("status", help="the projection's position and lag")
    status.add_argument("--gateway", default=None, help="ask this gateway when it holds the store")
    status.set_defaults(func=cmd_analytics_status)
    actions.add_parser("migrate", help="create the ClickHouse tables").set_defaults(func=cmd_analytics_migrate)
    actions.add_parser("rebuild", help="empty the analytics tables; the projection refills them from the ledger"
                       ).set_defaults(func=cmd_analytics_rebuild)

    dashboards = commands.add_parser("dashboards", help="run the Streamlit dashboards")
    dashboards.add_argument("--port", type=int, default=8501)
    dashboards.add_argument("--host", default="127.0.0.1")
    dashboards.add_argument("--gateway", default=None, help="the gateway's URL (default: http://127.0.0.1:$PORT)")
    dashboards.set_defaults(func=cmd_dashboards)

    demo = commands.add_parser("demo", help="simulator + gateway + dashboards + realistic traffic")
    demo.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080))
    demo.add_argument("--dashboards-port", type=int, default=8501)
    demo.add_argument("--duration", type=float, default=None, help="seconds of traffic (default: until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=8.0, help="requests per second")
    demo.add_argument("--no-dashboards", action="store_true")
    demo.add_argument("--traffic", action="store_true", help="only send traffic to a running gateway")
    demo.add_argument("--gateway", default=None, help="with --traffic: the gateway's URL")
    demo.add_argument("--simulator", default=None, help="with --traffic: the simulator's URL, for faults")
    demo.set_defaults(func=cmd_demo)


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
    add_tenancy_commands(commands, keys, tenants, credits)  # list/show/suspend..., limits, price-books...

    ledger = commands.add_parser("ledger", help="read the ledger").add_subparsers(dest="action", required=True)
    show = ledger.add_parser("show", help="a request's events, as JSON lines")
    show.add_argument("request_id")
    show.set_defaults(func=cmd_ledger_show)
    explain = ledger.add_parser("explain", help="a request's routing and attempts, in words")
    explain.add_argument("request_id")
    explain.set_defaults(func=cmd_ledger_explain)
    add_audit_commands(commands, ledger)  # ledger verify|seal|export, reprice

    migrate = commands.add_parser("migrate", help="create the ledger's tables and migrate the projection tables")
    migrate.set_defaults(func=cmd_migrate)
    add_analytics_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
