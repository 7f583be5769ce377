"""Invoice PDF renderer: render sample invoices and read them back with poppler's pdftotext."""

from __future__ import annotations

import io
import re
import subprocess
from copy import deepcopy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

from billing.delivery.pdf import fonts, format_percent, format_quantity, render_invoice_pdf
from billing.errors import DataError
from billing.pricing.money import format_money

LONDON = ZoneInfo("Europe/London")


def pdf_text(data: bytes, *, first: int | None = None, last: int | None = None, layout: bool = False) -> str:
    """Return the text pdftotext extracts (optionally pages ``first``..``last``)."""
    args = ["pdftotext", "-enc", "UTF-8"]
    if layout:
        args.append("-layout")
    if first is not None:
        args += ["-f", str(first)]
    if last is not None:
        args += ["-l", str(last)]
    done = subprocess.run([*args, "-", "-"], input=data, capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def pdf_pages(data: bytes) -> int:
    done = subprocess.run(["pdfinfo", "-"], input=data, capture_output=True, check=True)
    match = re.search(r"^Pages:\s+(\d+)", done.stdout.decode(), re.MULTILINE)
    assert match, done.stdout
    return int(match.group(1))


def pdf_fonts(data: bytes) -> str:
    done = subprocess.run(["pdffonts", "-"], input=data, capture_output=True, check=True)
    return done.stdout.decode()


def line(
    description: str, quantity: str, unit: str, amount: int, rate: str = "20", tax: int | None = None
) -> dict[str, Any]:
    if tax is None:
        tax = amount * int(Decimal(rate)) // 100
    return {
        "description": description,
        "quantity": quantity,
        "unit_amount_decimal": unit,
        "amount": amount,
        "tax_rate": rate,
        "tax": tax,
    }


def make_invoice(**overrides: Any) -> dict[str, Any]:
    """A typical one-page GBP invoice (November 2011, Europe/London), 20% VAT."""
    lines = [
        line("Pro plan — monthly subscription", "1", "4900", 4900),
        line("API requests beyond the included allowance", "125000.000", "0.05", 6250),
        line("Support hours", "12.000", "8000", 96000),
        line("Extra seats", "5", "1200", 6000),
        line("Onboarding workshop", "1", "35000", 35000),
        line("Storage GB-month", "512.5", "2.5", 1281),
    ]
    subtotal = sum(x["amount"] for x in lines)
    tax = sum(x["tax"] for x in lines)
    invoice: dict[str, Any] = {
        "invoice_id": "inv_0001",
        "number": "ACME-2011-0042",
        "status": "open",
        "currency": "GBP",
        "locale": "en_GB",
        "timezone": "Europe/London",
        "period_start": datetime(2011, 11, 1, tzinfo=LONDON),
        "period_end": datetime(2011, 12, 1, tzinfo=LONDON),
        "issued_at": datetime(2011, 12, 1, 9, 30, tzinfo=LONDON),
        "due_at": datetime(2011, 12, 31, tzinfo=LONDON),
        "seller": {
            "name": "Acme Cloud Services Ltd",
            "address_lines": ["1 Infinite Loop", "London EC1A 1BB", "United Kingdom"],
            "email": "billing@acme.example",
            "tax_id": "GB123456789",
        },
        "customer": {
            "id": "cus_001",
            "name": "Globex Corporation",
            "email": "ap@globex.example",
            "address": {
                "line1": "42 Main Street",
                "line2": "Suite 5",
                "city": "Springfield",
                "postal_code": "SP1 2AB",
                "country": "GB",
            },
            "tax_id": "GB987654321",
        },
        "lines": lines,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "tax_inclusive": False,
        "memo": "Pay by bank transfer, sort code 12-34-56, account 12345678.",
    }
    invoice.update(overrides)
    return invoice


def single_line_invoice(currency: str, amount: int, unit: str, **overrides: Any) -> dict[str, Any]:
    lines = [line("Widget", "1", unit, amount, "0", 0)]
    return make_invoice(currency=currency, lines=lines, subtotal=amount, tax=0, total=amount, **overrides)


def test_typical_invoice_shows_parties_dates_lines_and_totals() -> None:
    invoice = make_invoice()
    data = render_invoice_pdf(invoice)
    assert data.startswith(b"%PDF-")
    text = pdf_text(data)
    for expected in [
        "INVOICE",
        "ACME-2011-0042",
        "Acme Cloud Services Ltd",
        "1 Infinite Loop",
        "London EC1A 1BB",
        "billing@acme.example",
        "GB123456789",
        "Bill to".upper(),
        "Globex Corporation",
        "42 Main Street",
        "Suite 5",
        "Springfield SP1 2AB",
        "United Kingdom",
        "ap@globex.example",
        "GB987654321",
        "Issue date",
        "1 Dec 2011",
        "Due date",
        "31 Dec 2011",
        "Billing period",
        "1 Nov 2011 – 30 Nov 2011",
        "Description",
        "Qty",
        "Unit price",
        "Tax",
        "Amount",
        "Subtotal",
        "Tax (20%)",
        "Total",
        "Amount due",
        "Pay by bank transfer, sort code 12-34-56, account 12345678.",
        "Page 1 of 1",
    ]:
        assert expected in text, expected
    for item in invoice["lines"]:
        assert item["description"] in text
        assert format_money(item["amount"], "GBP") in text
    # Quantities normalized with grouping, unit prices in major units with every decimal.
    assert "125,000" in text and "125,000.000" not in text
    assert re.search(r"^12$", text, re.MULTILINE) and "12.000" not in text
    assert "512.5" in text
    assert "GBP 0.0005" in text and "GBP 80.00" in text
    assert "£1,530.00" not in text  # not an amount of this invoice; see the next test
    assert format_money(invoice["subtotal"], "GBP") in text
    assert format_money(invoice["tax"], "GBP") in text
    assert format_money(invoice["total"], "GBP") in text
    assert pdf_pages(data) == 1


def test_gbp_amounts_are_formatted_with_symbol_grouping_and_pence() -> None:
    invoice = single_line_invoice("GBP", 153000, "153000")
    text = pdf_text(render_invoice_pdf(invoice))
    assert "£1,530.00" in text
    assert "GBP 1,530.00" in text  # unit price


def test_jpy_amounts_have_no_decimals() -> None:
    invoice = single_line_invoice("JPY", 1234567, "1234567")
    text = pdf_text(render_invoice_pdf(invoice))
    amounts = re.findall(r"¥[\d,.]+", text)
    assert amounts, text
    assert "¥1,234,567" in amounts and "¥0" in amounts, amounts
    assert not any("." in a for a in amounts), amounts
    assert "1,234,567.00" not in text
    assert "JPY 1,234,567" in text


def test_kwd_amounts_have_three_decimals() -> None:
    invoice = single_line_invoice("KWD", 1234567, "1234567")
    text = pdf_text(render_invoice_pdf(invoice))
    assert re.search(r"KWD ?1,234\.567", text), text
    assert format_money(1234567, "KWD") in text
    assert "1,234.57" not in text.replace("1,234.567", "")


def test_euro_sign_stays_on_core_fonts_and_is_extractable() -> None:
    invoice = single_line_invoice("EUR", 123456, "123456", locale="de_DE")
    data = render_invoice_pdf(invoice)
    text = pdf_text(data)
    assert "1.234,56 €" in text
    fonts = pdf_fonts(data)
    assert "Helvetica" in fonts and "TrueType" not in fonts


@pytest.mark.parametrize(
    ("zone", "period", "issued"),
    [
        ("America/New_York", "1 Nov 2011 – 30 Nov 2011", "30 Nov 2011"),
        ("UTC", "1 Nov 2011 – 1 Dec 2011", "1 Dec 2011"),
    ],
)
def test_dates_are_shown_in_the_tenant_timezone(zone: str, period: str, issued: str) -> None:
    # A New York calendar month, as UTC instants: midnight EDT to midnight EST.
    invoice = make_invoice(
        timezone=zone,
        period_start=datetime(2011, 11, 1, 4, tzinfo=UTC),
        period_end=datetime(2011, 12, 1, 5, tzinfo=UTC),
        issued_at=datetime(2011, 12, 1, 3, tzinfo=UTC),
        due_at=None,
    )
    text = pdf_text(render_invoice_pdf(invoice), layout=True)
    assert re.search(rf"Billing period\s+{period}\n", text), text
    assert re.search(rf"Issue date\s+{issued}\n", text), text
    assert "Due date" not in text


def test_period_accepts_rfc3339_strings() -> None:
    invoice = make_invoice(
        period_start="2011-11-01T00:00:00Z", period_end="2011-12-01T00:00:00Z", timezone="UTC"
    )
    assert "1 Nov 2011 – 30 Nov 2011" in pdf_text(render_invoice_pdf(invoice))


def test_draft_without_number_is_marked_draft() -> None:
    invoice = make_invoice(number=None, status="draft", issued_at=None)
    data = render_invoice_pdf(invoice)
    text = pdf_text(data)
    assert text.count("DRAFT") >= 3  # title block, invoice number row, footer (+ watermark)
    assert "This is a draft" in text
    assert "Issue date" not in text
    # The watermark is a large rotated "DRAFT" drawn on the page.
    assert b"DRAFT" in data or "DRAFT" in pdf_text(data, layout=True)


def test_open_invoice_has_no_draft_marks() -> None:
    text = pdf_text(render_invoice_pdf(make_invoice()))
    assert "DRAFT" not in text and "draft" not in text


def test_tax_inclusive_labels() -> None:
    lines = [line("Annual plan", "1", "12000", 12000, "20", 2000)]
    invoice = make_invoice(lines=lines, subtotal=12000, tax=2000, total=12000, tax_inclusive=True)
    text = pdf_text(render_invoice_pdf(invoice))
    assert "Total (incl. tax)" in text
    assert "of which tax (20%)" in text
    assert "Amounts include VAT/tax" in text
    assert "£120.00" in text and "£20.00" in text
    assert "Subtotal" not in text


def test_tax_exclusive_labels_and_several_rates() -> None:
    lines = [
        line("Books", "2", "1000", 2000, "0", 0),
        line("Software", "1", "10000", 10000),
        line("Food", "4", "250", 1000, "5", 50),
    ]
    invoice = make_invoice(lines=lines, subtotal=13000, tax=2050, total=15050)
    text = pdf_text(render_invoice_pdf(invoice))
    assert "Subtotal" in text and "Total (incl. tax)" not in text
    assert "Amounts include" not in text
    for label in ("Tax (20%)", "Tax (5%)", "Tax (0%)"):
        assert label in text
    assert "£20.00" in text and "£0.50" in text and "£150.50" in text


def test_tax_rates_with_decimals() -> None:
    assert format_percent(Decimal("5.5")) == "5.5%"
    assert format_percent(Decimal("20.000")) == "20%"


def test_amount_paid_and_due() -> None:
    invoice = make_invoice(amount_paid=10000, amount_due=make_invoice()["total"] - 10000)
    text = pdf_text(render_invoice_pdf(invoice))
    assert "Amount paid" in text and "£100.00" in text
    assert format_money(invoice["amount_due"], "GBP") in text


def test_paid_and_void_are_stamped() -> None:
    paid = pdf_text(render_invoice_pdf(make_invoice(status="paid", amount_due=0)))
    assert "PAID" in paid and "Please pay" not in paid
    void = pdf_text(render_invoice_pdf(make_invoice(status="void")), layout=True)
    assert "VOID" in void and "voided" in void


def test_many_lines_flow_onto_pages_with_the_header_repeated() -> None:
    lines = [line(f"Usage item {i:03d}", "1", "100", 100) for i in range(1, 41)]
    invoice = make_invoice(lines=lines, subtotal=4000, tax=800, total=4800)
    data = render_invoice_pdf(invoice)
    pages = pdf_pages(data)
    assert pages == 2
    text = pdf_text(data)
    for i in range(1, 41):
        assert f"Usage item {i:03d}" in text
    page2 = pdf_text(data, first=2, last=2)
    for header in ("Description", "Qty", "Unit price", "Tax", "Amount"):
        assert header in page2
    assert "Page 2 of 2" in page2 and "(continued)" in page2
    assert "Page 1 of 2" in pdf_text(data, first=1, last=1)
    assert "Amount due" in page2  # totals after the last line


def test_very_long_description_is_wrapped_not_cut() -> None:
    words = " ".join(f"word{i}" for i in range(400))
    lines = [line(words + " THE-END", "1", "100", 100), line("x" * 300, "1", "100", 100)]
    invoice = make_invoice(lines=lines, subtotal=200, tax=40, total=240)
    data = render_invoice_pdf(invoice)
    text = " ".join(pdf_text(data).split())
    assert "word0 word1" in text and "word399 THE-END" in text
    assert "".join(re.findall(r"x+", text)).count("x") >= 300
    assert pdf_pages(data) >= 1


def test_row_taller_than_a_page_is_split_across_pages() -> None:
    description = "\n".join(f"detail line {i}" for i in range(150))
    invoice = make_invoice(lines=[line(description, "1", "100", 100)], subtotal=100, tax=20, total=120)
    data = render_invoice_pdf(invoice)
    assert pdf_pages(data) >= 3
    text = pdf_text(data)
    for i in range(150):
        assert f"detail line {i}\n" in text


def test_rendering_is_deterministic() -> None:
    invoice = make_invoice()
    assert render_invoice_pdf(invoice) == render_invoice_pdf(deepcopy(invoice))
    unicode = make_invoice(customer={"id": "c", "name": "株式会社テスト"})
    assert render_invoice_pdf(unicode) == render_invoice_pdf(deepcopy(unicode))


def test_non_latin_names_are_embedded_and_extractable() -> None:
    invoice = make_invoice(
        seller={"name": "ООО «Ромашка»", "address_lines": ["Москва, ул. Тверская, 1"]},
        customer={
            "id": "cus_jp",
            "name": "株式会社テスト",
            "address": {
                "line1": "千代田区丸の内1-1-1",
                "city": "東京都",
                "postal_code": "100-0005",
                "country": "JP",
            },
        },
        currency="EUR",
    )
    data = render_invoice_pdf(invoice)
    text = pdf_text(data)
    for expected in (
        "ООО «Ромашка»",
        "Москва, ул. Тверская, 1",
        "株式会社テスト",
        "千代田区丸の内1-1-1",
        "100-0005 東京都",
        "Japan",
        "€",
    ):
        assert expected in text, expected
    fonts = pdf_fonts(data)
    assert "DejaVuSans" in fonts and "DroidSansFallback" in fonts
    assert "Helvetica" not in fonts
    assert len(data) < 120_000  # only the glyphs used are embedded


def test_polish_customer_uses_dejavu_without_cjk_fallback() -> None:
    invoice = make_invoice(
        customer={
            "id": "c",
            "name": "Zakład Łódź sp. z o.o.",
            "address": {"country": "PL", "city": "Łódź", "postal_code": "90-001"},
        }
    )
    data = render_invoice_pdf(invoice)
    text = pdf_text(data)
    assert "Zakład Łódź sp. z o.o." in text and "90-001 Łódź" in text and "Poland" in text
    fonts = pdf_fonts(data)
    assert "DejaVuSans" in fonts and "Droid" not in fonts


def test_page_is_a4_portrait() -> None:
    done = subprocess.run(
        ["pdfinfo", "-"], input=render_invoice_pdf(make_invoice()), capture_output=True, check=True
    )
    assert "595.28 x 841.89 pts (A4)" in done.stdout.decode()


def test_quantity_formatting() -> None:
    assert format_quantity(Decimal("12.000")) == "12"
    assert format_quantity(Decimal("1234.5000")) == "1,234.5"
    assert format_quantity(Decimal("100")) == "100"
    assert format_quantity(Decimal("1E+3")) == "1,000"
    assert format_quantity(Decimal("0.000001")) == "0.000001"
    assert format_quantity(Decimal("1234.5"), "de_DE") == "1.234,5"


def test_lines_without_tax_fields_render() -> None:
    lines = [{"description": "Plain", "quantity": "2", "unit_amount_decimal": "150", "amount": 300}]
    invoice = make_invoice(lines=lines, subtotal=300, tax=0, total=300)
    text = pdf_text(render_invoice_pdf(invoice))
    assert "Plain" in text and "£3.00" in text


@pytest.mark.parametrize(
    "change",
    [
        lambda inv: inv.pop("currency"),
        lambda inv: inv.update(currency="XYZ"),
        lambda inv: inv.update(timezone="Mars/Olympus"),
        lambda inv: inv.update(locale="zz_ZZ"),
        lambda inv: inv.update(period_start=datetime(2011, 11, 1)),  # naive
        lambda inv: inv.update(total=1.5),
        lambda inv: inv["lines"][0].update(quantity="lots"),
        lambda inv: inv["lines"][0].pop("amount"),
        lambda inv: inv.update(lines="nope"),
        lambda inv: inv["customer"].pop("name"),
        lambda inv: inv.update(customer="Globex"),
        lambda inv: inv["customer"].update(address=["42 Main Street"]),
        lambda inv: inv["lines"].append("one more"),
        lambda inv: inv["seller"].update(address_lines="1 Infinite Loop"),
        lambda inv: inv["lines"][0].update(tax_rate=20.0),
    ],
)
def test_bad_input_raises_data_error(change: Any) -> None:
    invoice = make_invoice()
    change(invoice)
    with pytest.raises(DataError):
        render_invoice_pdf(invoice)


def test_font_subsets_keep_outlines_and_advances() -> None:
    """The subsetter keeps each glyph's outline and advance width."""
    for name in ("DejaVuSans.ttf", "DroidSansFallbackFull.ttf"):
        source = fonts.source_font(name)
        chars = sorted(source.cmap)[::37][:150] + [ord(c) for c in "Åé€Ж株"]
        subset = TTFont(io.BytesIO(source.subset(chars)))
        original = TTFont(str(fonts.FONT_DIR / name), lazy=True)
        sub_cmap, orig_cmap = subset.getBestCmap(), original.getBestCmap()
        sub_glyf, orig_glyf = subset["glyf"], original["glyf"]
        for char in chars:
            if char not in orig_cmap:
                continue
            new, old = sub_cmap[char], orig_cmap[char]
            assert list(sub_glyf[new].getCoordinates(sub_glyf)[0]) == list(
                orig_glyf[old].getCoordinates(orig_glyf)[0]
            ), (name, hex(char))
            assert subset["hmtx"][new] == original["hmtx"][old]
