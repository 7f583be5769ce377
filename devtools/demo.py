"""``make demo``: the month close of November 2011 for a real UK online retailer, on local emulators.

Starts the local stack (``devtools.local``), loads the shipped sample of the UCI Online Retail
data (40 customers' November 2011 rows; ``--csv`` takes the full file from ``../shared/data``),
serves ``monthly_billing`` and ``billing_worker`` with ``functions-framework`` in ``TASKS_MODE=http``
(tasks POSTed to the worker with ID tokens from the local metadata identity endpoint, as Cloud
Tasks does), and calls it three times through the admin command with a token from the local OIDC
issuer: a dry run (inline), the month close (fanned out: 202, then one progress line per stage
with its counts, polled through ``GET ?run_id=``), and a repeat that must create nothing. Prints
the summary, a few invoices, and where the PDFs are (the Storage emulator, and local copies under
``.dev/demo/pdfs``). Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import google.cloud.storage as storage
from google.cloud import firestore

from billing.pricing.money import format_money
from billing.runs.fanout import MONTH_CLOSE_STAGES
from devtools import online_retail
from devtools.local import REPO, LocalStack

SAMPLE = REPO / "demo" / "data" / "online_retail_2011-11_sample.csv.gz"
TENANT = "uk-retail"
MONTH = "2011-11"


def admin_call(url: str, *extra: str) -> dict[str, Any]:
    """Run ``python -m admin call monthly_billing`` with a locally minted token; return its JSON."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "admin",
            "call",
            "monthly_billing",
            "--url",
            url,
            "--local",
            "--issuer-dir",
            str(REPO / ".dev" / "issuer"),
            "--tenant",
            TENANT,
            "--month",
            MONTH,
            "--output",
            "json",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"admin call failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    try:
        result: dict[str, Any] = json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"admin call answered no JSON:\n{completed.stdout}\n{completed.stderr}") from None
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 1 if the month close reports errors."""
    parser = argparse.ArgumentParser(prog="python -m devtools.demo")
    parser.add_argument("--csv", type=Path, default=SAMPLE)
    args = parser.parse_args(argv)
    with LocalStack() as stack:
        db = firestore.Client(project=stack.project)
        print(f"Loading {args.csv.name} ({MONTH}) into the Firestore emulator ...")
        loaded = online_retail.load(db, args.csv, MONTH, tenant_id=TENANT)
        print(
            f"  {loaded.events_written} usage events, {loaded.customers} customers; "
            f"rows skipped: {dict(loaded.read.skipped)}"
        )
        worker = stack.start_fanout()
        url = stack.start_function("monthly_billing")
        print(f"monthly_billing serving at {url}, billing_worker at {worker} (TASKS_MODE=http)\n")

        dry = admin_call(url, "--dry-run")
        print(
            f"Dry run: would create {dry['generated']} invoices, totals "
            f"{_totals(dry['totals'])}; nothing written."
        )
        close = follow(stack, url, admin_call(url))
        print(
            f"Month close {MONTH} (run {close['run_id']}): {close['generated']} invoices, "
            f"{close['skipped']} skipped, {len(close['errors'])} errors, totals "
            f"{_totals(close['totals'])}"
        )
        again = follow(stack, url, admin_call(url))
        reasons = sorted({s["reason"] for s in again["skips"]})
        print(
            f"Repeat of the same month: {again['generated']} new invoices "
            f"({again['skipped']} skipped: {', '.join(reasons) or 'none'})\n"
        )

        invoices = sorted(
            (s.to_dict() or {} for s in db.collection(f"tenants/{TENANT}/invoices").stream()),
            key=lambda inv: str(inv["number"]),
        )
        print(f"{'number':<18}{'customer':<10}{'lines':>6}{'subtotal':>14}{'VAT':>12}{'total':>14}")
        for inv in invoices[:8]:
            print(
                f"{inv['number']:<18}{inv['customer_id']:<10}{len(inv['lines']):>6}"
                f"{format_money(inv['subtotal'], 'GBP'):>14}{format_money(inv['tax'], 'GBP'):>12}"
                f"{format_money(inv['total'], 'GBP'):>14}"
            )
        if len(invoices) > 8:
            print(f"... and {len(invoices) - 8} more")

        out = REPO / ".dev" / "demo" / "pdfs"
        out.mkdir(parents=True, exist_ok=True)
        bucket = storage.Client(project=stack.project).bucket(stack.bucket)
        for inv in invoices:
            name = str(inv["pdf_uri"]).split("/", 3)[3]
            (out / Path(name).name).write_bytes(bucket.blob(name).download_as_bytes())
        print(
            f"\nPDFs: gs://{stack.bucket}/{TENANT}/{MONTH}/ in the Storage emulator "
            f"({len(invoices)} files), copied to {out.relative_to(REPO)}/"
        )
        if invoices:
            print(f"  e.g. {out.relative_to(REPO)}/{invoices[0]['number']}.pdf")
            show_current_usage(stack.start_function("current_usage"), str(invoices[0]["customer_id"]))
        return 1 if close["errors"] else 0


def show_current_usage(url: str, customer_id: str) -> None:
    """Issue 13: ``python -m admin usage`` asks ``current_usage`` for one customer's November usage."""
    issuer = str(REPO / ".dev" / "issuer")
    argv = ["usage", customer_id, "--tenant", TENANT, "--url", url, "--local", "--issuer-dir", issuer]
    completed = subprocess.run(
        [sys.executable, "-m", "admin", *argv, "--as-of", "2011-11-30T12:00:00Z"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    print(f"\ncurrent_usage for customer {customer_id} (November 2011, priced now):")
    print(completed.stdout.rstrip() or completed.stderr.rstrip())


def stage_counts(stage: str, r: dict[str, Any]) -> str:
    """The progress line's counts for a finished ``stage`` of the run record ``r``."""
    chunks = r.get("chunks_total", 0)
    lines = {
        "plan": f"{chunks} chunks planned",
        "price": f"{r.get('price_done', 0)}/{chunks} chunks priced, {r.get('generated', 0)} invoices created",
        "number": f"{r.get('numbered', 0)} invoices numbered",
        "render": f"{r.get('render_done', 0)}/{chunks} chunks rendered",
        "deliver": f"{r.get('deliver_done', 0)}/{chunks} chunks delivered",
        "summarize": "run summarized",
        "done": f"{r.get('generated', 0)} invoices, {r.get('skipped', 0)} skipped",
    }
    return lines.get(stage, "")


def _finished_since(seen: list[str], current: str) -> list[str]:
    """The stages after the last one printed, up to (not including) ``current``."""
    order = [*MONTH_CLOSE_STAGES, "done"]
    first = order.index(seen[-1]) if seen and seen[-1] in order else -1
    last = order.index(current) if current in order else len(order)
    return [stage for stage in order[max(first, 0) : last] if stage not in seen[:-1]]


def follow(stack: LocalStack, url: str, accepted: dict[str, Any]) -> dict[str, Any]:
    """Poll ``GET ?run_id=`` of a fanned-out run, printing a line per stage; the final record."""
    import time

    import requests

    from devtools.dev_issuer import mint_token

    if accepted.get("status") != "running":
        return accepted  # an inline answer
    assert stack.key is not None
    print(f"Month close {MONTH} fanned out (run {accepted['run_id']}): 202 running")
    seen: list[str] = []
    while True:
        headers = {"Authorization": f"Bearer {mint_token(stack.key, audience=url)}", "X-Tenant-ID": TENANT}
        record: dict[str, Any] = requests.get(
            url, params={"run_id": accepted["run_id"]}, headers=headers, timeout=30
        ).json()
        tenant = record["tenants"][0]
        stage = str(tenant.get("stage"))
        if stage not in seen:
            # Every stage finished since the last poll, in order (fast ones finish between polls).
            for done in _finished_since(seen, stage):
                print(f"  stage {done:<9} {stage_counts(done, tenant)}")
            seen.append(stage)
        if record["status"] != "running":
            print(f"  stage {stage:<9} {stage_counts(stage, tenant)} ({record['status']})")
            return record
        time.sleep(0.3)


def _totals(totals: dict[str, int]) -> str:
    return ", ".join(format_money(v, c) for c, v in sorted(totals.items())) or "none"


if __name__ == "__main__":
    raise SystemExit(main())
