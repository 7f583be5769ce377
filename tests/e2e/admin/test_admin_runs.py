"""``python -m admin runs`` and ``export`` (admin.runs) against the emulator."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.cloud import firestore

from billing.store.reporting import ReportingStore
from tests import getting_paid as gp

T = gp.T


def seed(db: firestore.Client) -> None:
    gp.seed_tenant(db)
    gp.seed_invoice(db, "inv-1", "alice", due_at=datetime(2026, 11, 1, tzinfo=UTC))
    for run_id, minute, errors in (("run-a", 1, 0), ("run-b", 2, 2)):
        db.document(f"tenants/{T}/billing_runs/{run_id}").set(
            {
                "function": "monthly_billing",
                "status": "completed",
                "started_at": datetime(2026, 11, 1, 0, minute, tzinfo=UTC),
                "errors": errors,
                "errors_by_stage": {
                    "pricing": errors,
                    "storage": 0,
                    "pdf": 0,
                    "upload": 0,
                    "stripe": 0,
                    "email": 0,
                },
            }
        )


def run(db: firestore.Client, *argv: str) -> tuple[int, str, str]:
    from admin import runs

    out, err = io.StringIO(), io.StringIO()
    status = runs.main(list(argv), store=ReportingStore(db), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_runs_list_shows_newest_first_with_errors_by_stage(db: firestore.Client) -> None:
    seed(db)
    status, out, _ = run(db, "runs", "list")
    lines = out.splitlines()
    assert status == 0 and len(lines) == 2
    assert lines[0].endswith("run-b") and "errors=2 [pricing=2]" in lines[0]
    assert lines[1].endswith("run-a") and "[-]" in lines[1]


def test_runs_show_prints_the_record_and_fails_for_an_unknown_run(db: firestore.Client) -> None:
    seed(db)
    status, out, _ = run(db, "runs", "show", "run-b")
    (record,) = json.loads(out)
    assert status == 0 and record["tenant_id"] == T and record["errors_by_stage"]["pricing"] == 2
    assert run(db, "runs", "show", "nope")[0] == 1


def test_export_aging_and_register_write_csv(db: firestore.Client, tmp_path: Path) -> None:
    seed(db)
    status, out, _ = run(db, "export", "aging", "--tenant", T, "--as-of", "2026-12-15")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [(r["customer_id"], r["days_31_60"]) for r in rows] == [("alice", "120.00")]
    target = tmp_path / "register.csv"
    status, _, _ = run(
        db,
        "export",
        "register",
        "--tenant",
        T,
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-31",
        "--out",
        str(target),
    )
    rows = list(csv.DictReader(target.open(newline="")))
    assert status == 0 and [(r["number"], r["total"]) for r in rows] == [
        (gp.invoice(db, "inv-1")["number"], "120.00")
    ]
    assert run(db, "export", "register", "--tenant", T, "--from", "2026-10-31", "--to", "2026-10-01")[0] == 2


def test_python_m_admin_hands_runs_to_admin_runs(
    db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    from admin.__main__ import route

    seed(db)
    assert route(["runs", "show", "run-a", "--tenant", T]) == 0
    assert json.loads(capsys.readouterr().out)[0]["run_id"] == "run-a"
