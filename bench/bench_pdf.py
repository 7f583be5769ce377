"""Benchmark the invoice PDF renderer: milliseconds per invoice, median and p95.

Run with ``.venv/bin/python -m bench.bench_pdf [--count N]``. Renders N one-page invoices
(8 lines, GBP, core Helvetica fonts), then N invoices whose customer has a Cyrillic name
(embedded DejaVu Sans subsets), then N with a Japanese name (DejaVu plus the CJK fallback),
then a few 10-page invoices, and prints one line per case: wall-clock median and p95, and the
median CPU time of the process (steadier when other work shares the machine). Not a pytest
test. The target is at most 8 ms per one-page invoice on the core-font path.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from billing.delivery.pdf import render_invoice_pdf

LONDON = ZoneInfo("Europe/London")
TARGET_MS = 8.0


def make_invoice(index: int, lines: int = 8, customer_name: str | None = None) -> dict[str, Any]:
    """Return a realistic invoice; ``index`` varies the numbers so no two are identical."""
    items: list[dict[str, Any]] = []
    for i in range(lines):
        quantity = 1 + (index * 7 + i * 13) % 500
        unit = 25 + (i * 1000 + index) % 9000
        amount = quantity * unit
        items.append(
            {
                "description": f"Usage charge {i + 1}: API requests, storage and egress (tier {i % 3})",
                "quantity": f"{quantity}.000",
                "unit_amount_decimal": str(unit),
                "amount": amount,
                "tax_rate": "20",
                "tax": amount // 5,
            }
        )
    subtotal = sum(item["amount"] for item in items)
    tax = sum(item["tax"] for item in items)
    return {
        "invoice_id": f"inv_{index:06d}",
        "number": f"ACME-2011-{index:06d}",
        "status": "open",
        "currency": "GBP",
        "locale": "en_GB",
        "timezone": "Europe/London",
        "period_start": datetime(2011, 11, 1, tzinfo=LONDON),
        "period_end": datetime(2011, 12, 1, tzinfo=LONDON),
        "issued_at": datetime(2011, 12, 1, 9, tzinfo=LONDON),
        "due_at": datetime(2011, 12, 31, tzinfo=LONDON),
        "seller": {
            "name": "Acme Cloud Services Ltd",
            "address_lines": ["1 Infinite Loop", "London EC1A 1BB", "United Kingdom"],
            "email": "billing@acme.example",
            "tax_id": "GB123456789",
        },
        "customer": {
            "id": f"cus_{index:05d}",
            "name": customer_name or f"Customer {index} Limited",
            "email": f"ap{index}@customer.example",
            "address": {
                "line1": f"{index} High Street",
                "city": "Manchester",
                "postal_code": "M1 1AA",
                "country": "GB",
            },
            "tax_id": None,
        },
        "lines": items,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "tax_inclusive": False,
        "memo": "Pay by bank transfer to Acme Cloud Services Ltd, sort code 12-34-56, "
        "account 12345678, quoting the invoice number.",
    }


def measure(name: str, count: int, build: Callable[[int], dict[str, Any]]) -> float:
    """Render ``count`` invoices from ``build(i)``; print and return the median in ms."""
    invoices = [build(i) for i in range(count)]
    render_invoice_pdf(build(count))  # warm-up: fonts read, babel data loaded
    times: list[float] = []
    cpu: list[float] = []
    size = 0
    for invoice in invoices:
        start, start_cpu = time.perf_counter(), time.process_time()
        data = render_invoice_pdf(invoice)
        cpu.append((time.process_time() - start_cpu) * 1000)
        times.append((time.perf_counter() - start) * 1000)
        size += len(data)
    times.sort()
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(
        f"{name:<34} n={count:<4} median {median:6.2f} ms  p95 {p95:6.2f} ms  "
        f"(CPU median {statistics.median(cpu):6.2f} ms)  avg size {size // count // 1024} KiB"
    )
    return median


def main() -> None:
    """Run every case and report whether the one-page core-font median meets the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=500, help="invoices per one-page case")
    args = parser.parse_args()
    count = args.count
    core = measure("one page, core fonts (Helvetica)", count, make_invoice)
    measure(
        "one page, Cyrillic (DejaVu TTF)",
        count,
        lambda i: make_invoice(i, customer_name=f"ООО «Ромашка-{i}»"),
    )
    measure(
        "one page, Japanese (DejaVu + CJK)",
        max(count // 5, 20),
        lambda i: make_invoice(i, customer_name=f"株式会社テスト{i}"),
    )
    measure("10 pages (200 lines), core fonts", max(count // 25, 10), lambda i: make_invoice(i, lines=200))
    verdict = "OK" if core <= TARGET_MS else "SLOWER THAN TARGET"
    print(f"target <= {TARGET_MS:.0f} ms per one-page invoice (core fonts): {verdict}")


if __name__ == "__main__":
    main()
