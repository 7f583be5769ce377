"""Drawing an ``InvoiceModel`` with fpdf2: A4 portrait, header, lines table, totals, notes, footers.

``render(model)`` lays out what a company sends its customers: the seller block and the
"INVOICE" title with its number (or "DRAFT") and status badge, the "Bill to" block beside the
dates, a table of lines (Description | Qty | Unit price | Tax | Amount) that flows onto further
pages with its header repeated (a row taller than a page is split), the totals, payment notes
and "Page i of N" footers. The flow runs twice: once to count the pages, once to draw.

Text is measured and drawn run by run: characters the main font lacks (CJK) are drawn with the
fallback font that ``billing.delivery.pdf.fonts`` loaded. Scripts that need shaping or
right-to-left layout (Arabic, Hebrew, Indic) are drawn glyph by glyph, unshaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fpdf import FPDF

from billing.delivery.pdf.fonts import fonts_for
from billing.delivery.pdf.model import InvoiceModel

# Page geometry (millimetres, A4 portrait) and colours (RGB).
_PAGE_W, _PAGE_H = 210.0, 297.0
_MARGIN_X = 18.0
_TOP = 16.0
_CONTENT_W = _PAGE_W - 2 * _MARGIN_X
_RIGHT = _PAGE_W - _MARGIN_X
_FOOTER_RULE_Y = _PAGE_H - 15.0
_BOTTOM = _FOOTER_RULE_Y - 5.0  # nothing but the footer goes below this line

_INK = (33, 37, 41)
_MUTED = (98, 106, 116)
_ACCENT = (24, 56, 99)
_RULE = (214, 219, 225)
_ROW_RULE = (229, 232, 236)
_SHADE = (240, 242, 245)
_DRAFT_RED = (196, 43, 28)
_WATERMARK = (234, 236, 239)

# Lines table: Description | Qty | Unit price | Tax | Amount (widths add up to _CONTENT_W).
_COL_W = (80.0, 18.0, 30.0, 16.0, 30.0)
_COL_ALIGN = ("L", "R", "R", "R", "R")
_CELL_PAD_X = 2.0
_ROW_PAD_Y = 1.9
_LINE_H = 4.3  # one line of 9 pt text
_HEAD_H = 7.5

_SELLER_W = 104.0  # seller block, top left; the title block takes the rest of the width
_BILL_W = 84.0  # "Bill to" block; the dates start 8 mm to its right

_TOTALS_W = 86.0
_TOTALS_LABEL_W = 52.0


def render(model: InvoiceModel) -> bytes:
    """Draw ``model`` and return the PDF's bytes (the same bytes for the same model)."""
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.alias_nb_pages(None)  # type: ignore[arg-type]  # we count pages ourselves
    pdf.set_margins(_MARGIN_X, _TOP, _MARGIN_X)
    pdf.c_margin = 0
    pdf.set_creation_date(model.creation_date)
    pdf.set_title(model.title)
    pdf.set_author(model.seller_name)
    pdf.set_creator("gcp-billing-automation")
    pdf.set_lang(model.lang)
    with fonts_for(pdf, "".join(model.strings())) as family:
        layout = _Layout(pdf, model, family, fallback=pdf.fonts.get("cjk"))
        layout.measure_rows()
        layout.run(draw=False)
        layout.run(draw=True)
        return bytes(pdf.output())


@dataclass
class _Row:
    cells: list[list[str]]
    lines: int

    @property
    def height(self) -> float:
        return self.lines * _LINE_H + 2 * _ROW_PAD_Y


@dataclass
class _Layout:
    """Measured blocks and the page flow, run once to count pages and once to draw."""

    pdf: FPDF
    model: InvoiceModel
    family: str
    draw: bool = False
    page: int = 0
    pages: int = 0
    y: float = 0.0
    rows: list[_Row] = field(default_factory=list)
    fallback: Any = None  # the fpdf2 font drawing what the main font lacks (CJK), if any
    state: dict[str, Any] = field(default_factory=dict)  # colours and line width last set

    # -- primitives -------------------------------------------------------------------------
    def font(self, style: str = "", size: float = 9.0, color: tuple[int, int, int] = _INK) -> None:
        self.pdf.set_font(self.family, style, size)
        self.text_color(color)

    # fpdf2 turns every colour into an object (slow when done hundreds of times per page):
    # these setters skip calls that would not change anything.
    def text_color(self, color: tuple[int, int, int]) -> None:
        if color != self.state.get("text"):
            self.pdf.set_text_color(*color)
            self.state["text"] = color

    def stroke(self, color: tuple[int, int, int], width: float) -> None:
        if self.draw and color != self.state.get("draw"):
            self.pdf.set_draw_color(*color)
            self.state["draw"] = color
        if self.draw and width != self.state.get("width"):
            self.pdf.set_line_width(width)
            self.state["width"] = width

    def width(self, text: str) -> float:
        """Return the width of ``text`` in mm in the current font (fallback glyphs included)."""
        pdf = self.pdf
        scale = pdf.font_size_pt / 1000 / pdf.k
        if self.family == "helvetica":
            core: Any = pdf.current_font
            widths: Any = core.cw
            return float(sum(widths[c] for c in text.encode("cp1252").decode("latin-1"))) * scale
        units = 0
        for font, run in self.runs(text):
            widths = font.cw
            units += sum(widths[ord(c)] for c in run)
        return float(units) * scale

    def runs(self, text: str) -> list[tuple[Any, str]]:
        """Split ``text`` into ``(fpdf2 font, substring)`` runs.

        Each run uses the current font, or the fallback font for characters it lacks.
        """
        pdf = self.pdf
        primary: Any = pdf.current_font
        fallback = self.fallback
        if fallback is None:
            return [(primary, text)]
        runs: list[tuple[Any, str]] = []
        cmap, backup = primary.cmap, fallback.cmap
        for char in text:
            code = ord(char)
            font = fallback if code not in cmap and code in backup else primary
            if runs and runs[-1][0] is font:
                runs[-1] = (font, runs[-1][1] + char)
            else:
                runs.append((font, char))
        return runs

    def text(self, x: float, baseline: float, text: str) -> None:
        """Draw ``text`` with its left end at ``x`` and its baseline at ``baseline`` (mm)."""
        pdf = self.pdf
        runs = self.runs(text)
        if len(runs) == 1 and runs[0][0] is not self.fallback:
            pdf.text(x, baseline, text)
            return
        family, style, size = pdf.font_family, pdf.font_style, pdf.font_size_pt
        for font, run in runs:
            if font is self.fallback:
                pdf.set_font("cjk", "", size)
            else:
                pdf.set_font(family, style, size)
            pdf.text(x, baseline, run)
            x += self.width(run)
        pdf.set_font(family, style, size)

    def wrap(self, text: str, width: float) -> list[str]:
        """Split ``text`` into lines no wider than ``width`` mm in the current font."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            if self.width(paragraph) <= width:
                lines.append(paragraph)
                continue
            current = ""
            for word in paragraph.split(" "):
                candidate = f"{current} {word}" if current else word
                if self.width(candidate) <= width:
                    current = candidate
                    continue
                if current:
                    lines.append(current)
                current = word
                if self.width(word) > width:  # a word wider than the column: cut it
                    *pieces, current = self.split_word(word, width)
                    lines.extend(pieces)
            lines.append(current)
        return lines or [""]

    def split_word(self, word: str, width: float) -> list[str]:
        """Cut ``word`` into pieces no wider than ``width`` mm (at least one character each)."""
        pieces: list[str] = []
        current, used = "", 0.0
        for char in word:
            char_w = self.width(char)
            if current and used + char_w > width:
                pieces.append(current)
                current, used = "", 0.0
            current += char
            used += char_w
        pieces.append(current)
        return pieces

    def fit(self, text: str, width: float) -> str:
        """Return ``text``, shortened with an ellipsis if it is wider than ``width`` mm."""
        if self.width(text) <= width:
            return text
        while text and self.width(text + "…") > width:
            text = text[:-1]
        return text.rstrip() + "…"

    def put(self, x: float, y: float, w: float, h: float, text: str, align: str = "L") -> None:
        """Draw one line of ``text`` in the box ``(x, y, w, h)``, vertically centred."""
        if not (self.draw and text):
            return
        if align == "R":
            x += w - self.width(text)
        elif align == "C":
            x += (w - self.width(text)) / 2
        self.text(x, y + 0.5 * h + 0.3 * self.pdf.font_size, text)

    def rule(
        self,
        y: float,
        x1: float = _MARGIN_X,
        x2: float = _RIGHT,
        color: tuple[int, int, int] = _RULE,
        width: float = 0.2,
    ) -> None:
        if self.draw:
            self.stroke(color, width)
            self.pdf.line(x1, y, x2, y)

    def fill(self, x: float, y: float, w: float, h: float, color: tuple[int, int, int] = _SHADE) -> None:
        if self.draw:
            if color != self.state.get("fill"):
                self.pdf.set_fill_color(*color)
                self.state["fill"] = color
            self.pdf.rect(x, y, w, h, style="F")

    # -- flow -------------------------------------------------------------------------------
    def run(self, draw: bool) -> None:
        self.draw, self.page = draw, 0
        self.new_page()
        self.first_page_header()
        self.table()
        self.totals()
        self.notes()
        self.footer()
        self.pages = self.page

    def new_page(self) -> None:
        if self.page:
            self.footer()
        self.page += 1
        if self.draw:
            self.pdf.add_page()
            if self.model.watermark:
                self.watermark(self.model.watermark)
        self.y = _TOP
        if self.page > 1:
            half = _CONTENT_W / 2 - 2
            self.font("B", 9.5)
            self.put(_MARGIN_X, self.y, half, 5, self.fit(self.model.seller_name, half))
            self.font("", 8.5, _MUTED)
            self.put(_RIGHT - half, self.y, half, 5, self.fit(self.model.continued, half), "R")
            self.rule(self.y + 7.5)
            self.y += 12

    def ensure(self, height: float) -> bool:
        """Start a new page unless ``height`` mm fit; return whether a page was started."""
        if self.y + height <= _BOTTOM:
            return False
        self.new_page()
        return True

    def watermark(self, text: str) -> None:
        pdf = self.pdf
        pdf.set_font(self.family, "B", 110)
        self.text_color(_WATERMARK)
        width = self.width(text)
        with pdf.rotation(35, _PAGE_W / 2, _PAGE_H / 2):
            pdf.text(_PAGE_W / 2 - width / 2, _PAGE_H / 2 + 14, text)

    def footer(self) -> None:
        y = _FOOTER_RULE_Y
        self.rule(y)
        self.font("", 7.5, _MUTED)
        left_w = _CONTENT_W - 34
        self.put(_MARGIN_X, y + 1.5, left_w, 5, self.fit(self.model.footer_left, left_w))
        self.put(_RIGHT - 40, y + 1.5, 40, 5, f"Page {self.page} of {self.pages}", "R")

    # -- blocks -----------------------------------------------------------------------------
    def first_page_header(self) -> None:
        """Seller and title blocks, a rule, "Bill to" beside the dates, then the headline."""
        y = max(self.seller_block(), self.title_block()) + 5
        self.rule(y, color=_ACCENT, width=0.5)
        y += 6
        self.y = max(self.bill_to(y), self.meta(y)) + 6
        self.headline()

    def seller_block(self) -> float:
        """Draw the seller's name and lines at the top left; return the y below them."""
        left_w = _SELLER_W
        y = _TOP
        self.font("B", 15)
        for line in self.wrap(self.model.seller_name, left_w):
            self.put(_MARGIN_X, y, left_w, 7, line)
            y += 7
        y += 0.5
        self.font("", 8.5, _MUTED)
        for text in self.model.seller_lines:
            for line in self.wrap(text, left_w):
                self.put(_MARGIN_X, y, left_w, 4, line)
                y += 4
        return y

    def title_block(self) -> float:
        """Draw the heading ("INVOICE", "CREDIT NOTE"), number and badge top right; return the y below."""
        m = self.model
        right_w = _CONTENT_W - _SELLER_W - 4
        right_x = _RIGHT - right_w
        ry = _TOP - 1.5
        self.font("B", 24, _ACCENT)
        self.put(right_x, ry, right_w, 10, m.heading, "R")
        ry += 11
        if m.is_draft:
            self.font("B", 12, _DRAFT_RED)
        else:
            self.font("", 11, _INK)
        for line in self.wrap(m.number_text, right_w):
            self.put(right_x, ry, right_w, 5.5, line, "R")
            ry += 5.5
        if m.badge:
            ry = self.badge(*m.badge, ry)
        return ry

    def badge(self, label: str, color: tuple[int, int, int], y: float) -> float:
        """Draw a status stamp ("PAID"...) right-aligned below ``y``; return the y below it."""
        self.font("B", 8.5, color)
        badge_w = self.width(label) + 6
        y += 1.5
        if self.draw:
            self.stroke(color, 0.4)
            self.pdf.rect(_RIGHT - badge_w, y, badge_w, 6, style="D", round_corners=True, corner_radius=1.2)
        self.put(_RIGHT - badge_w, y, badge_w, 6, label, "C")
        return y + 6

    def bill_to(self, y: float) -> float:
        """Draw the "Bill to" block from ``y`` at the left; return the y below it."""
        bill_w = _BILL_W
        self.font("B", 7.5, _MUTED)
        self.put(_MARGIN_X, y, bill_w, 4, self.model.bill_to_label)
        by = y + 5
        self.font("B", 10)
        for line in self.wrap(self.model.customer_name, bill_w):
            self.put(_MARGIN_X, by, bill_w, 5, line)
            by += 5
        self.font("", 8.5)
        for text in self.model.customer_lines:
            for line in self.wrap(text, bill_w):
                self.put(_MARGIN_X, by, bill_w, 4.2, line)
                by += 4.2
        return by

    def meta(self, y: float) -> float:
        """Draw the labelled dates and numbers from ``y`` at the right; return the y below."""
        m = self.model
        meta_x, meta_label_w = _MARGIN_X + _BILL_W + 8, 28.0
        meta_value_w = _RIGHT - meta_x - meta_label_w
        for label, value in m.meta:
            self.font("", 8.5, _MUTED)
            self.put(meta_x, y, meta_label_w, 4.8, label)
            self.font(
                "B" if label == m.number_label else "",
                8.5,
                _DRAFT_RED if label == m.number_label and m.is_draft else _INK,
            )
            for line in self.wrap(value, meta_value_w):
                self.put(meta_x + meta_label_w, y, meta_value_w, 4.8, line, "R")
                y += 4.8
        return y

    def headline(self) -> None:
        """Draw the headline ("£29.40 due 31 Dec 2011") across the page, if any."""
        if not self.model.headline:
            return
        self.font("B", 13)
        for line in self.wrap(self.model.headline, _CONTENT_W):
            self.put(_MARGIN_X, self.y, _CONTENT_W, 6.5, line)
            self.y += 6.5
        self.y += 4

    def table_header(self) -> None:
        y = self.y
        self.fill(_MARGIN_X, y, _CONTENT_W, _HEAD_H)
        self.font("B", 8, _MUTED)
        x = _MARGIN_X
        for label, width, align in zip(self.model.header_cells, _COL_W, _COL_ALIGN, strict=True):
            self.put(x + _CELL_PAD_X, y, width - 2 * _CELL_PAD_X, _HEAD_H, label, align)
            x += width
        self.rule(y + _HEAD_H, color=_RULE, width=0.3)
        self.y += _HEAD_H

    def measure_rows(self) -> None:
        self.font("", 9)
        self.rows = []
        for row in self.model.rows:
            cells = [
                self.wrap(text, width - 2 * _CELL_PAD_X) for text, width in zip(row, _COL_W, strict=True)
            ]
            self.rows.append(_Row(cells, max(len(c) for c in cells)))

    def table(self) -> None:
        self.ensure(_HEAD_H + _LINE_H + 2 * _ROW_PAD_Y)
        self.table_header()
        self.font("", 9)
        for row in self.rows:
            first = 0
            while first < row.lines:
                room = int((_BOTTOM - self.y - 2 * _ROW_PAD_Y) // _LINE_H)
                fits_whole = first == 0 and row.lines <= room
                fresh_room = int((_BOTTOM - _TOP - 12 - _HEAD_H - 2 * _ROW_PAD_Y) // _LINE_H)
                if not fits_whole and (room < 1 or (first == 0 and row.lines <= fresh_room)):
                    self.new_page()
                    self.table_header()
                    self.font("", 9)
                    continue
                last = min(row.lines, first + max(room, 1))
                self.draw_row(row, first, last)
                first = last

    def draw_row(self, row: _Row, first: int, last: int) -> None:
        y = self.y + _ROW_PAD_Y
        x = _MARGIN_X
        for lines, width, align in zip(row.cells, _COL_W, _COL_ALIGN, strict=True):
            for i, line in enumerate(lines[first:last]):
                self.put(x + _CELL_PAD_X, y + i * _LINE_H, width - 2 * _CELL_PAD_X, _LINE_H, line, align)
            x += width
        self.y += (last - first) * _LINE_H + 2 * _ROW_PAD_Y
        self.rule(self.y, color=_ROW_RULE, width=0.2)

    def totals(self) -> None:
        m = self.model
        heights = {"normal": 6.0, "muted": 5.5, "total": 7.0, "due": 8.5}
        height = sum(heights[t.kind] for t in m.totals) + 4
        self.ensure(height + 2)
        x = _RIGHT - _TOTALS_W
        value_w = _TOTALS_W - _TOTALS_LABEL_W
        y = self.y + 3
        if m.inclusive_note:
            self.font("", 8, _MUTED)
            self.put(_MARGIN_X, y, x - _MARGIN_X - 4, 6, m.inclusive_note)
        for t in m.totals:
            h = heights[t.kind]
            if t.kind == "total":
                self.rule(y, x, _RIGHT, _INK, 0.3)
                self.font("B", 9.5)
            elif t.kind == "due":
                y += 1
                self.fill(x, y, _TOTALS_W, h)
                self.font("B", 10.5)
            elif t.kind == "muted":
                self.font("", 8.5, _MUTED)
            else:
                self.font("", 9)
            self.put(x + _CELL_PAD_X, y, _TOTALS_LABEL_W - _CELL_PAD_X, h, t.label)
            self.put(x + _TOTALS_LABEL_W, y, value_w - _CELL_PAD_X, h, t.value, "R")
            y += h
        self.y = y + 6

    def notes(self) -> None:
        m = self.model
        if not m.notes:
            return
        self.font("", 8.5)
        lines: list[str] = []
        for note in m.notes:
            lines.extend(self.wrap(note, _CONTENT_W))
            lines.append("")
        lines.pop()
        # Keep the heading with the first lines (all of them when the notes are short).
        self.ensure(6 + sum(4.2 if line else 2.0 for line in lines[:4]))
        self.font("B", 9)
        self.put(_MARGIN_X, self.y, _CONTENT_W, 5, "Notes")
        self.y += 6
        self.font("", 8.5)
        for line in lines:
            if self.ensure(4.2):
                self.font("", 8.5)
            self.put(_MARGIN_X, self.y, _CONTENT_W, 4.2, line)
            self.y += 4.2 if line else 2.0
