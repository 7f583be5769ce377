r"""``python -m admin runs ...`` and ``python -m admin export ...``: run records and CSV exports.

Usage::

    python -m admin runs list [--tenant T] [--function F] [--limit N]
    python -m admin runs show RUN_ID [--tenant T]
    python -m admin export register --tenant T --from YYYY-MM-DD --to YYYY-MM-DD [--out FILE]
    python -m admin export aging --tenant T [--as-of YYYY-MM-DD] [--out FILE]

These read Firestore directly with Application Default Credentials (``GOOGLE_CLOUD_PROJECT``;
``FIRESTORE_EMULATOR_HOST`` locally, as ``make serve`` prints), through the same store code as
the console (``billing.store.reporting``, ``billing.exports``): a read-only operator's tool that
needs ``roles/datastore.viewer`` and no function or IAP in between. The console is the way for
finance users (IAP, tenant scoping); ``GET <function URL>?run_id=`` answers one run through a
function with a token (``python -m admin call FUNCTION --method GET ...``).

``runs list`` prints one line per run, newest first (every tenant unless ``--tenant``);
``runs show`` prints the run record(s) with that id as JSON (every tenant holding it). Exit
status: 0, 1 when nothing was found, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any, TextIO

from billing.errors import BillingError
from billing.exports import ar_aging, invoice_register, parse_date_range, write_aging, write_register
from billing.pricing.periods import zone
from billing.runs.stages import STAGES
from billing.store.reporting import ReportingStore


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``runs`` and ``export``."""
    parser = argparse.ArgumentParser(prog="python -m admin", description="Run records and CSV exports.")
    sub = parser.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("runs", help="list or show run records").add_subparsers(dest="what", required=True)
    listing = runs.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--tenant")
    listing.add_argument("--function")
    listing.add_argument("--limit", type=int, default=20)
    show = runs.add_parser("show", help="one run's record(s) as JSON")
    show.add_argument("run_id")
    show.add_argument("--tenant")
    export = sub.add_parser("export", help="CSV exports").add_subparsers(dest="what", required=True)
    register = export.add_parser("register", help="the invoice register for a date range")
    register.add_argument("--tenant", required=True)
    register.add_argument("--from", dest="start", required=True)
    register.add_argument("--to", dest="end", required=True)
    register.add_argument("--out")
    aging = export.add_parser("aging", help="AR aging by customer")
    aging.add_argument("--tenant", required=True)
    aging.add_argument("--as-of")
    aging.add_argument("--out")
    return parser


def _default_store() -> ReportingStore:
    from billing.store.clients import firestore_client

    return ReportingStore(firestore_client())


def _stages(record: dict[str, Any]) -> str:
    counts = record.get("errors_by_stage") or {}
    shown = [f"{s}={counts[s]}" for s in STAGES if counts.get(s)]
    return " ".join(shown) or "-"


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value or "-")


def list_runs(store: ReportingStore, args: argparse.Namespace, out: TextIO) -> int:
    """Print recent runs: started, tenant, function, status, errors and their stages, run id."""
    tenants = [args.tenant] if args.tenant else store.tenant_ids()
    records = [r for t in tenants for r in store.list_runs(t, args.limit)]
    if args.function:
        records = [r for r in records if r.get("function") == args.function]
    records.sort(key=lambda r: _when(r.get("started_at")), reverse=True)
    for r in records[: args.limit]:
        print(
            f"{_when(r.get('started_at'))}  {r['tenant_id']:<16} {r.get('function', '?'):<18} "
            f"{r.get('status', '?'):<10} errors={r.get('errors', 0)} [{_stages(r)}]  {r['run_id']}",
            file=out,
        )
    return 0 if records else 1


def show_run(store: ReportingStore, args: argparse.Namespace, out: TextIO) -> int:
    """Print the run record(s) with ``args.run_id`` as JSON."""
    tenants = [args.tenant] if args.tenant else store.tenant_ids()
    found = [r for t in tenants if (r := store.get_run(t, args.run_id)) is not None]
    print(json.dumps(found, indent=2, default=str), file=out)
    return 0 if found else 1


def export_csv(store: ReportingStore, args: argparse.Namespace, out: TextIO) -> int:
    """Write the register or the aging of ``args.tenant`` as CSV (``--out`` or stdout)."""
    tenant = store.get_tenant(args.tenant)
    target = open(args.out, "w", newline="", encoding="utf-8") if args.out else out
    try:
        if args.what == "register":
            first, last = parse_date_range(args.start, args.end)
            write_register(invoice_register(store, tenant, first, last), target)
        else:
            as_of = datetime.now(zone(tenant.timezone))
            if args.as_of:
                day, _ = parse_date_range(args.as_of, args.as_of)
                as_of = datetime.combine(day + timedelta(days=1), time(), zone(tenant.timezone)) - timedelta(
                    microseconds=1
                )
            write_aging(ar_aging(store, tenant, as_of), target)
    finally:
        if target is not out:
            target.close()
    return 0


def main(
    argv: Sequence[str],
    *,
    store: ReportingStore | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``runs``/``export``; return the exit status (see the module docstring)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(list(argv))
    reader = store or _default_store()
    try:
        if args.command == "runs":
            return (list_runs if args.what == "list" else show_run)(reader, args, out)
        return export_csv(reader, args, out)
    except BillingError as exc:
        print(f"error: {exc.message}", file=err)
        return 2 if exc.status == 400 else 1


__all__ = ["build_parser", "export_csv", "list_runs", "main", "show_run"]
