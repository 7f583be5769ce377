"""Fonts for invoice PDFs: core Helvetica when WinAnsi covers the text, else TrueType subsets.

When every string of the document is encodable in WinAnsi (cp1252: Latin-1 plus "€", curly
quotes, dashes...) the PDF uses the core Helvetica fonts, which cost nothing to embed. Otherwise
it embeds DejaVu Sans (Latin, Greek, Cyrillic...) with Droid Sans Fallback for the characters
DejaVu lacks (Chinese, Japanese, Korean): the TrueType files of ``billing/delivery/fonts``
(``FONT_DIR``).

Subsetting. fontTools reads each font once per process (``source_font``); for each document
``SourceFont.subset`` builds, with fontTools' ``FontBuilder``, a TrueType file holding only the
glyphs of the characters the document uses, and fpdf2 embeds that (its own fontTools pass over
so small a file is cheap). Handing fontTools' ``Subsetter`` or fpdf2 the whole fonts for every
document costs 40-400 ms (fontTools) or 190-800 ms (fpdf2) per document, because both decode
every glyph and name of the font each time (Droid Sans Fallback has 49,000 glyphs).
"""

from __future__ import annotations

import copy
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from fontTools.fontBuilder import FontBuilder  # type: ignore[import-untyped]
from fontTools.ttLib import TTFont, newTable  # type: ignore[import-untyped]
from fontTools.ttLib.tables._g_l_y_f import Glyph  # type: ignore[import-untyped]
from fpdf import FPDF

FONT_DIR = Path(__file__).resolve().parent.parent / "fonts"


# Tables copied from the source font as they are: their glyph counts and character ranges are
# recomputed when the subset is saved; bounds and timestamps are kept (no recalculation).
_COPIED_TABLES = ("head", "hhea", "maxp", "OS/2")
_POST_FIELDS = ("italicAngle", "underlinePosition", "underlineThickness", "isFixedPitch")


class SourceFont:
    """A TrueType (``glyf``) font read once with fontTools, cut into small subsets on demand.

    ``cmap`` maps each code point the font covers to its glyph's name. ``subset(codepoints)``
    returns a complete TrueType file holding ``.notdef``, the glyphs of those code points that
    the font has and their composite components, with the font's metrics and its copyright,
    family and full names. Hinting is left out, as PDF producers commonly do (viewers scale
    outlines); so are tables that only layout engines read (kerning, OpenType layout, device
    metrics, vertical metrics).
    """

    def __init__(self, path: Path) -> None:
        font = TTFont(str(path), lazy=True, recalcBBoxes=False, recalcTimestamp=False)
        # Plain glyph names: deriving names from the cmap costs 0.3 s for a 49,000-glyph font.
        font.setGlyphOrder([".notdef", *(f"g{i}" for i in range(1, font["maxp"].numGlyphs))])
        self._font = font
        self.cmap: dict[int, str] = font.getBestCmap()
        self._glyf: Any = font["glyf"]
        self._metrics: dict[str, tuple[int, int]] = font["hmtx"].metrics
        self._post = {key: getattr(font["post"], key) for key in _POST_FIELDS}
        self._prepared: dict[str, Any] = {}
        self._names = [
            record
            for record in font["name"].names
            if record.platformID == 3
            and record.nameID <= 6
            and (record.langID == 0x409 or record.nameID == 0)
        ]

    def subset(self, codepoints: Iterable[int]) -> bytes:
        """Return a TrueType file with the glyphs of ``codepoints`` this font has."""
        cmap = {code: self.cmap[code] for code in codepoints if code in self.cmap}
        order = self._glyph_order(cmap.values())
        builder = FontBuilder(font=TTFont(recalcBBoxes=False, recalcTimestamp=False))
        builder.setupGlyphOrder(order)
        font = builder.font
        for tag in _COPIED_TABLES:
            font[tag] = copy.copy(self._font[tag])
        builder.setupCharacterMap(cmap)
        builder.setupHorizontalMetrics({name: self._metrics[name] for name in order})
        builder.setupPost(keepGlyphNames=False, **self._post)
        font["loca"] = newTable("loca")
        glyf = font["glyf"] = newTable("glyf")
        glyf.glyphOrder = order
        glyf.glyphs = {name: self._glyph(name) for name in order}
        font["name"] = newTable("name")
        font["name"].names = list(self._names)
        out = io.BytesIO()
        font.save(out)
        return out.getvalue()

    def _glyph_order(self, names: Iterable[str]) -> list[str]:
        """``.notdef``, ``names`` and their components (transitively), in the source's order."""
        wanted = {".notdef", *names}
        pending = list(wanted)
        while pending:
            for component in self._glyph(pending.pop()).getComponentNames(self._glyf):
                if component not in wanted:
                    wanted.add(component)
                    pending.append(component)
        return sorted(wanted, key=self._font.getGlyphID)

    def _glyph(self, name: str) -> Any:
        """Glyph ``name`` without hinting, a composite's components held by name.

        Prepared once per process and shared by every subset: saving a font does not change
        its glyphs (bounds are not recalculated).
        """
        glyph = self._prepared.get(name)
        if glyph is None:
            glyph = Glyph(self._glyf.glyphs[name].compile(self._glyf, recalcBBoxes=False))
            if glyph.isComposite():
                glyph.expand(self._glyf)  # renumbered when a subset is saved
            glyph.removeHinting()
            self._prepared[name] = glyph
        return glyph


@cache
def source_font(file_name: str) -> SourceFont:
    """The font ``FONT_DIR / file_name``, read once per process."""
    return SourceFont(FONT_DIR / file_name)


_REGULAR = "DejaVuSans.ttf"
_BOLD = "DejaVuSans-Bold.ttf"
_FALLBACK = "DroidSansFallbackFull.ttf"


def core_encodable(text: str) -> bool:
    """Tell whether the core fonts (WinAnsi, cp1252) can draw ``text``."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _keep_bounds(pdf: FPDF, fontkey: str) -> None:
    """Tell fontTools not to recompute glyph bounds when fpdf2 saves the subset.

    Our subsets keep each glyph's original (correct) bounds; recomputing them decodes and
    re-encodes every glyph in pure Python, which is most of the cost of a TrueType document.
    """
    ttfont = getattr(pdf.fonts.get(fontkey), "ttfont", None)
    if ttfont is not None:
        ttfont.recalcBBoxes = False


@contextmanager
def fonts_for(pdf: FPDF, text: str) -> Iterator[str]:
    """Set up the fonts that can draw ``text`` on ``pdf``; yield the family to use.

    Core Helvetica (WinAnsi) when it covers everything; otherwise subsets of DejaVu Sans
    regular and bold, plus Droid Sans Fallback for what DejaVu lacks, written to a temporary
    directory that is removed on exit.
    """
    if core_encodable(text):
        pdf.core_fonts_encoding = "cp1252"
        yield "helvetica"
        return
    codepoints = {ord(c) for c in text} | set(range(0x20, 0x7F))
    regular = source_font(_REGULAR)
    missing = {c for c in codepoints if c not in regular.cmap and c > 0x20}
    with tempfile.TemporaryDirectory(prefix="invoice-fonts-") as folder:
        files = {"": (_REGULAR, codepoints), "B": (_BOLD, codepoints)}
        for style, (name, wanted) in files.items():
            path = os.path.join(folder, f"dejavu{style}.ttf")
            Path(path).write_bytes(source_font(name).subset(wanted))
            pdf.add_font("dejavu", style, path)
            _keep_bounds(pdf, f"dejavu{style}")
        fallback = source_font(_FALLBACK) if missing else None
        if fallback is not None and any(c in fallback.cmap for c in missing):
            path = os.path.join(folder, "cjk.ttf")
            Path(path).write_bytes(fallback.subset(missing))
            pdf.add_font("cjk", "", path)
            _keep_bounds(pdf, "cjk")
            pdf.set_fallback_fonts(["cjk"], exact_match=False)
        try:
            yield "dejavu"
        finally:
            for font in pdf.fonts.values():
                ttfont = getattr(font, "ttfont", None)
                if ttfont is not None:
                    ttfont.close()
