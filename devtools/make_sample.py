"""Cut the shipped demo sample ``demo/data/online_retail_2011-11_sample.csv.gz`` from the full file.

The sample lets ``make demo`` load a real month on a machine without ``../shared``. It holds, in
the order of the full file and in its exact format (same header, columns and CSV quoting, every
field byte for byte), the rows dated 2011-11 (UK local time) of:

* the 20 smallest CustomerIDs whose country (CSV ``Country`` of their first row in the full file)
  is United Kingdom and the 20 smallest of the other customers, among those with at least one
  qualifying row (not cancelled, quantity > 0) in 2011-11: every 2011-11 row of theirs, their
  cancellations included, so their invoices are complete and their event ids
  (``ort-{InvoiceNo}-{n}``) are the same as in the full file;
* two rows the loader must skip: the first 2011-11 row without a CustomerID (positive quantity,
  not cancelled: ``missing_customer_id``) and the first 2011-11 non-cancelled row with a negative
  quantity (``non_positive_quantity``). Cancellations come with the chosen customers.

The output is deterministic: same input, same bytes (gzip header without file name or time).

Usage::

    python -m devtools.make_sample [--csv ../shared/data/online_retail_2010-12_2011-12.csv.gz]
                                   [--out demo/data/online_retail_2011-11_sample.csv.gz]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
from collections.abc import Sequence
from pathlib import Path

from devtools.online_retail import HEADER, open_csv

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "online_retail_2010-12_2011-12.csv.gz"
DEFAULT_OUT = REPO / "demo" / "data" / "online_retail_2011-11_sample.csv.gz"
MONTH = "2011-11"
PER_GROUP = 20
HOME_COUNTRY = "United Kingdom"

_INVOICE, _QUANTITY, _DATE, _CUSTOMER, _COUNTRY = 0, 3, 4, 6, 7


def _is_sale(row: list[str]) -> bool:
    """Not cancelled and a positive quantity."""
    return not row[_INVOICE].startswith("C") and int(row[_QUANTITY]) > 0


def _qualifies(row: list[str]) -> bool:
    """A sale the loader turns into an event (it also has a customer id)."""
    return bool(row[_CUSTOMER].strip()) and _is_sale(row)


def select_rows(rows: Sequence[list[str]], month: str = MONTH, per_group: int = PER_GROUP) -> list[list[str]]:
    """Return the sample's rows (see the module docstring), in their order in ``rows``.

    ``rows`` are the data rows of the full file (header excluded), as the csv module reads them.

    Raises:
        ValueError: the month has no row without a customer id or no negative-quantity sale.

    """
    first_country: dict[str, str] = {}
    for row in rows:
        if row[_CUSTOMER]:
            first_country.setdefault(row[_CUSTOMER], row[_COUNTRY])
    in_month = [row for row in rows if row[_DATE].startswith(month)]
    buyers = sorted({row[_CUSTOMER] for row in in_month if _qualifies(row)}, key=lambda cid: int(float(cid)))
    home = [cid for cid in buyers if first_country[cid] == HOME_COUNTRY][:per_group]
    abroad = [cid for cid in buyers if first_country[cid] != HOME_COUNTRY][:per_group]
    chosen = set(home) | set(abroad)
    no_customer = next((id(row) for row in in_month if not row[_CUSTOMER] and _is_sale(row)), None)
    negative = next(
        (id(row) for row in in_month if not row[_INVOICE].startswith("C") and int(row[_QUANTITY]) < 0), None
    )
    if no_customer is None or negative is None:
        raise ValueError(f"{month} lacks a row without customer id or a negative-quantity sale")
    extra = {no_customer, negative}
    return [row for row in in_month if row[_CUSTOMER] in chosen or id(row) in extra]


def write_sample(source: Path, out: Path) -> int:
    """Write the sample of ``source`` to ``out`` (gzip, reproducible bytes); return its row count.

    Raises:
        ValueError: see :func:`select_rows`; OSError: unreadable source or unwritable output.

    """
    with open_csv(source) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    if tuple(header) != HEADER:
        raise ValueError(f"{source}: unexpected header {header!r}")
    sample = select_rows(rows)
    text = io.StringIO(newline="")
    # The full file uses "\n" line ends and minimal quoting (quotes doubled), as the csv default.
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(sample)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(out, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(text.getvalue().encode("utf-8"))
    return len(sample)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.make_sample", description="Cut the 2011-11 demo sample from the full file."
    )
    parser.add_argument("--csv", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    count = write_sample(args.csv, args.out)
    print(f"wrote {count} rows to {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
