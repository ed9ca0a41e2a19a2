"""`twoapi routing show|set`: the routing defaults of a tenant or a key, from the
command line (the Admin API's `PUT /admin/tenants/{t}/routing` and
`PUT /admin/keys/{key_id}/routing`). Writes are `Tenant.RoutingSet` / `ApiKey.RoutingSet`
events; the defaults are read from the aggregates themselves.

`set` changes only the options given: `none` makes one inherit again, `--clear`
makes them all inherit. Each option of a request is taken from the request's own
`routing`, else the key's defaults, else the tenant's, else the gateway's settings.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from gateway.routing_options import ROUTING_FIELDS, defaults_record


def _ledger() -> Any:
    from gateway.config import Settings
    from ledger.application import Ledger

    settings = Settings.from_env()
    return Ledger.open(settings.database_url, settings.data_dir)


def _fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def _current(aggregate: Any) -> dict[str, Any]:
    stored = getattr(aggregate, "routing", None) or {}
    return {name: stored.get(name) for name in ROUTING_FIELDS}


def _target(args: argparse.Namespace, ledger: Any) -> tuple[str, Any] | int:
    if bool(args.tenant) == bool(args.key):
        return _fail("give --tenant NAME or --key KEY_ID", 2)
    if args.tenant:
        tenant = ledger.find_tenant(args.tenant)
        return ("tenant", tenant) if tenant is not None else _fail(f"no tenant {args.tenant}")
    key = ledger.get_key(args.key)
    return ("key", key) if key is not None else _fail(f"no key {args.key}")


def _shown(kind: str, aggregate: Any, args: argparse.Namespace) -> dict[str, Any]:
    who = {"tenant": args.tenant} if kind == "tenant" else {"key_id": args.key, "tenant": aggregate.tenant}
    return {**who, "routing": _current(aggregate)}


def cmd_routing_show(args: argparse.Namespace) -> int:
    ledger = _ledger()
    target = _target(args, ledger)
    if isinstance(target, int):
        return target
    sys.stdout.write(orjson.dumps(_shown(*target, args)).decode() + "\n")
    return 0


def cmd_routing_set(args: argparse.Namespace) -> int:
    from adapters.catalog import default_catalog
    from gateway.errors import GatewayError
    ledger = _ledger()
    target = _target(args, ledger)
    if isinstance(target, int):
        return target
    kind, aggregate = target
    wanted = {} if args.clear else _current(aggregate)
    for name in ROUTING_FIELDS:
        flag = getattr(args, name)
        if flag is None:
            continue
        try:
            wanted[name] = _parse(name, flag)
        except ValueError as error:
            return _fail(f"--{name.replace('_', '-')}: {error}", 2)
    try:
        record = defaults_record(default_catalog(), wanted)
    except GatewayError as error:
        return _fail(error.message, 2)
    try:
        if kind == "tenant":
            aggregate = ledger.set_tenant_routing(args.tenant, record)
        else:
            aggregate = ledger.set_key_routing(args.key, record)
    except ValueError as error:
        return _fail(str(error))
    sys.stdout.write(orjson.dumps(_shown(kind, aggregate, args)).decode() + "\n")
    return 0


def _parse(name: str, flag: str) -> Any:
    if flag.strip().lower() in ("none", "inherit"):
        return None
    if name == "fallbacks":
        return [m.strip() for m in flag.split(",") if m.strip()]
    if name in ("max_attempts", "timeout_ms"):
        try:
            return int(flag)
        except ValueError:
            raise ValueError(f"not a whole number: {flag}") from None
    return flag.strip()


def add_routing_commands(commands: Any) -> None:
    routing = commands.add_parser("routing", help="routing defaults of a tenant or a key").add_subparsers(
        dest="action", required=True)
    show = routing.add_parser("show", help="a tenant's or a key's routing defaults (null: inherited)")
    setter = routing.add_parser("set", help="set a tenant's or a key's routing defaults (only the options given)")
    for parser in (show, setter):
        parser.add_argument("--tenant")
        parser.add_argument("--key", help="a key id")
    setter.add_argument("--strategy", help="cost, latency or quality (for model 'auto'), or 'none'")
    setter.add_argument("--fallbacks", help="comma-separated models tried after an explicit model, or 'none'")
    setter.add_argument("--max-attempts", dest="max_attempts", help="1-10 attempts in all, or 'none'")
    setter.add_argument("--timeout-ms", dest="timeout_ms", help="100-600000 ms, the request's deadline, or 'none'")
    setter.add_argument("--max-cost", dest="max_cost", help="USD; with quality, skip models estimated above it")
    setter.add_argument("--clear", action="store_true", help="start from no defaults (all inherited)")
    show.set_defaults(func=cmd_routing_show)
    setter.set_defaults(func=cmd_routing_set)
