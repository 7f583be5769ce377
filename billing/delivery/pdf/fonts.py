"""Fonts for invoice PDFs: core Helvetica when WinAnsi covers the text, else TrueType subsets.

When every string of the document is encodable in WinAnsi (cp1252: Latin-1 plus "€", curly
quotes, dashes...) the PDF uses the core Helvetica fonts, which cost nothing to embed. Otherwise
it embeds DejaVu Sans (Latin, Greek, Cyrillic...) with Droid Sans Fallback for the characters
DejaVu lacks (Chinese, Japanese, Korean): the TrueType files of ``billing/delivery/fonts``
(``FONT_DIR``). For each document this module cuts a subset holding only the characters the
document uses (``_TrueTypeFont.subset``, plain byte slicing), because handing fpdf2 the whole
fonts costs 100-500 ms of fontTools work per document.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from fpdf import FPDF

FONT_DIR = Path(__file__).resolve().parent.parent / "fonts"


class _TrueTypeFont:
    """A TrueType (``glyf``) font file read once per process, cut into tiny subsets on demand.

    ``subset(chars)`` returns a complete, valid TrueType file holding only ``.notdef``, the
    glyphs of ``chars`` that the font has, and their composite components (renumbered), with
    the font's metrics and its copyright, family and full names. Hinting (instructions and
    their programs) is left out, as PDF producers commonly do: viewers scale outlines. Tables
    indexed by glyph id that are not rebuilt (kerning, OpenType layout, device metrics) are
    dropped. Fewer, smaller tables make fpdf2's own (fontTools) pass over the font cheaper.
    """

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        (num_tables,) = struct.unpack_from(">H", data, 4)
        tables: dict[str, bytes] = {}
        for i in range(num_tables):
            tag, _checksum, offset, length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
            tables[tag.decode("latin-1")] = data[offset : offset + length]
        self._tables = tables
        (loc_format,) = struct.unpack_from(">h", tables["head"], 50)
        (self._num_glyphs,) = struct.unpack_from(">H", tables["maxp"], 4)
        (num_metrics,) = struct.unpack_from(">H", tables["hhea"], 34)
        count = self._num_glyphs + 1
        if loc_format == 0:
            self._loca = [2 * x for x in struct.unpack_from(f">{count}H", tables["loca"])]
        else:
            self._loca = list(struct.unpack_from(f">{count}I", tables["loca"]))
        hmtx = tables["hmtx"]
        metrics = list(struct.iter_unpack(">Hh", hmtx[: 4 * num_metrics]))
        extra = self._num_glyphs - num_metrics
        lsbs = struct.unpack_from(f">{extra}h", hmtx, 4 * num_metrics) if extra > 0 else ()
        metrics.extend((metrics[-1][0], lsb) for lsb in lsbs)
        self._metrics = metrics
        self.cmap: dict[int, int] = _read_cmap(tables["cmap"])
        self._names = _trim_names(tables["name"])

    def _components(self, gid: int) -> tuple[list[tuple[int, int, int]], int]:
        """Return a composite glyph's ``(offset, flags, glyph id)`` records and their end offset.

        Offsets are relative to the glyph's start; a simple or empty glyph has no records.
        """
        start, end = self._loca[gid], self._loca[gid + 1]
        glyf = self._tables["glyf"]
        if end - start < 10 or struct.unpack_from(">h", glyf, start)[0] >= 0:
            return [], 0
        found: list[tuple[int, int, int]] = []
        pos = 10
        while True:
            flags, component = struct.unpack_from(">HH", glyf, start + pos)
            found.append((pos, flags, component))
            pos += 4 + (4 if flags & 0x0001 else 2)
            if flags & 0x0008:
                pos += 2
            elif flags & 0x0040:
                pos += 4
            elif flags & 0x0080:
                pos += 8
            if not flags & 0x0020:
                return found, pos

    def _glyph(self, gid: int, new_id: Mapping[int, int]) -> bytes:
        """Return glyph ``gid``'s outline without instructions, components renumbered."""
        start, end = self._loca[gid], self._loca[gid + 1]
        glyf = self._tables["glyf"]
        if end - start < 10:
            return b""
        (contours,) = struct.unpack_from(">h", glyf, start)
        if contours >= 0:
            at = start + 10 + 2 * contours
            points = struct.unpack_from(">H", glyf, at - 2)[0] + 1 if contours else 0
            (length,) = struct.unpack_from(">H", glyf, at)
            flags_at = pos = at + 2 + length
            coordinates = seen = 0
            while seen < points:  # flags (with repeats), then the x and y coordinate sizes
                flag, repeat = glyf[pos], 1
                pos += 1
                if flag & 0x08:
                    repeat += glyf[pos]
                    pos += 1
                x_size = 1 if flag & 0x02 else (0 if flag & 0x10 else 2)
                y_size = 1 if flag & 0x04 else (0 if flag & 0x20 else 2)
                coordinates += repeat * (x_size + y_size)
                seen += repeat
            return glyf[start:at] + b"\0\0" + glyf[flags_at : pos + coordinates]
        records, stop = self._components(gid)
        glyph = bytearray(glyf[start : start + stop])
        for pos, flags, component in records:
            struct.pack_into(">HH", glyph, pos, flags & ~0x0100, new_id.get(component, 0))
        return bytes(glyph)

    def subset(self, codepoints: Iterable[int]) -> bytes:
        """Return a TrueType file with the glyphs of ``codepoints`` this font has."""
        mapping = {c: self.cmap[c] for c in codepoints if c in self.cmap}
        wanted = {0, *mapping.values()}
        pending = list(wanted)
        while pending:
            for _, _, component in self._components(pending.pop())[0]:
                if component not in wanted and component < self._num_glyphs:
                    wanted.add(component)
                    pending.append(component)
        order = sorted(wanted)
        new_id = {old: new for new, old in enumerate(order)}
        glyf = bytearray()
        loca = [0]
        for old in order:
            glyf += self._glyph(old, new_id)
            glyf += b"\0" * (-len(glyf) % 4)
            loca.append(len(glyf))
        count = len(order)
        head = bytearray(self._tables["head"])
        struct.pack_into(">I", head, 8, 0)  # checkSumAdjustment, set below
        struct.pack_into(">h", head, 50, 1)  # long loca offsets
        maxp = bytearray(self._tables["maxp"])
        struct.pack_into(">H", maxp, 4, count)
        hhea = bytearray(self._tables["hhea"])
        struct.pack_into(">H", hhea, 34, count)
        post = bytearray(self._tables["post"][:32])
        struct.pack_into(">I", post, 0, 0x00030000)  # version 3: no glyph names
        tables: dict[str, bytes] = {
            "head": bytes(head),
            "hhea": bytes(hhea),
            "maxp": bytes(maxp),
            "hmtx": b"".join(struct.pack(">Hh", *self._metrics[old]) for old in order),
            "loca": struct.pack(f">{count + 1}I", *loca),
            "glyf": bytes(glyf),
            "cmap": _build_cmap({c: new_id[g] for c, g in mapping.items()}),
            "post": bytes(post),
        }
        if "OS/2" in self._tables:
            tables["OS/2"] = self._tables["OS/2"]
        tables["name"] = self._names
        return _write_sfnt(tables)


def _trim_names(table: bytes) -> bytes:
    """Keep the Windows-platform name records 0-6 of a ``name`` table; drop the rest.

    Those are the copyright, family, style, unique id, full name, version and PostScript name.
    """
    count, storage = struct.unpack_from(">HH", table, 2)
    kept: list[tuple[int, int, int, int, bytes]] = []
    for i in range(count):
        platform, encoding, language, name_id, length, offset = struct.unpack_from(
            ">6H", table, 6 + 12 * i
        )
        if platform == 3 and name_id <= 6 and (language == 0x409 or name_id == 0):
            start = storage + offset
            kept.append((platform, encoding, language, name_id, table[start : start + length]))
    kept.sort()
    records, strings = b"", b""
    for platform, encoding, language, name_id, text in kept:
        records += struct.pack(">6H", platform, encoding, language, name_id, len(text),
                               len(strings))
        strings += text
    return struct.pack(">3H", 0, len(kept), 6 + 12 * len(kept)) + records + strings


def _read_cmap(table: bytes) -> dict[int, int]:
    """Read the best Unicode subtable (format 12, else format 4) as ``{codepoint: glyph id}``."""
    (count,) = struct.unpack_from(">H", table, 2)
    offsets: dict[tuple[int, int], int] = {}
    for i in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", table, 4 + 8 * i)
        offsets[(platform, encoding)] = offset
    for key in ((3, 10), (0, 6), (0, 4)):
        if key in offsets and struct.unpack_from(">H", table, offsets[key])[0] == 12:
            return _read_cmap12(table, offsets[key])
    for key in ((3, 1), (0, 3), (0, 2), (0, 1), (0, 0)):
        if key in offsets and struct.unpack_from(">H", table, offsets[key])[0] == 4:
            return _read_cmap4(table, offsets[key])
    raise ValueError("font has no Unicode cmap of format 4 or 12")


def _read_cmap12(table: bytes, offset: int) -> dict[int, int]:
    (groups,) = struct.unpack_from(">I", table, offset + 12)
    result: dict[int, int] = {}
    for start, end, glyph in struct.iter_unpack(
        ">III", table[offset + 16 : offset + 16 + 12 * groups]
    ):
        for code in range(start, end + 1):
            result[code] = glyph + code - start
    return result


def _read_cmap4(table: bytes, offset: int) -> dict[int, int]:
    seg_count = struct.unpack_from(">H", table, offset + 6)[0] // 2
    ends = struct.unpack_from(f">{seg_count}H", table, offset + 14)
    starts_at = offset + 16 + 2 * seg_count
    starts = struct.unpack_from(f">{seg_count}H", table, starts_at)
    deltas = struct.unpack_from(f">{seg_count}h", table, starts_at + 2 * seg_count)
    ranges_at = starts_at + 4 * seg_count
    ranges = struct.unpack_from(f">{seg_count}H", table, ranges_at)
    result: dict[int, int] = {}
    for i in range(seg_count):
        for code in range(starts[i], ends[i] + 1):
            if code == 0xFFFF:
                continue
            if ranges[i] == 0:
                glyph = (code + deltas[i]) & 0xFFFF
            else:
                at = ranges_at + 2 * i + ranges[i] + 2 * (code - starts[i])
                glyph = struct.unpack_from(">H", table, at)[0]
                glyph = (glyph + deltas[i]) & 0xFFFF if glyph else 0
            if glyph:
                result[code] = glyph
    return result


def _build_cmap(mapping: dict[int, int]) -> bytes:
    """Build a cmap table: format 4 (3,1) for the BMP, plus format 12 (3,10) beyond it."""
    bmp = sorted((c, g) for c, g in mapping.items() if c < 0xFFFF)
    segments = [(c, c, (g - c) & 0xFFFF) for c, g in bmp] + [(0xFFFF, 0xFFFF, 1)]
    seg_count = len(segments)
    power = 1 << (seg_count.bit_length() - 1)
    fmt4 = struct.pack(
        ">7H", 4, 16 + 8 * seg_count, 0, 2 * seg_count, 2 * power,
        power.bit_length() - 1, 2 * seg_count - 2 * power,
    )
    fmt4 += struct.pack(f">{seg_count}H", *(s[1] for s in segments)) + b"\0\0"
    fmt4 += struct.pack(f">{seg_count}H", *(s[0] for s in segments))
    fmt4 += struct.pack(f">{seg_count}H", *(s[2] for s in segments))
    fmt4 += b"\0\0" * seg_count
    subtables = [(3, 1, fmt4)]
    if any(c > 0xFFFF for c in mapping):
        groups = sorted(mapping.items())
        fmt12 = struct.pack(">HHIII", 12, 0, 16 + 12 * len(groups), 0, len(groups))
        fmt12 += b"".join(struct.pack(">III", c, c, g) for c, g in groups)
        subtables.append((3, 10, fmt12))
    header = struct.pack(">HH", 0, len(subtables))
    offset = 4 + 8 * len(subtables)
    body = b""
    for platform, encoding, data in subtables:
        header += struct.pack(">HHI", platform, encoding, offset + len(body))
        body += data
    return header + body


def _checksum(data: bytes) -> int:
    padded = data + b"\0" * (-len(data) % 4)
    return int(sum(struct.unpack(f">{len(padded) // 4}I", padded))) & 0xFFFFFFFF


def _write_sfnt(tables: dict[str, bytes]) -> bytes:
    tags = sorted(tables)
    count = len(tags)
    power = 1 << (count.bit_length() - 1)
    out = bytearray(struct.pack(">IHHHH", 0x00010000, count, 16 * power,
                                power.bit_length() - 1, 16 * count - 16 * power))
    offset = 12 + 16 * count
    body = bytearray()
    for tag in tags:
        data = tables[tag]
        out += struct.pack(">4sIII", tag.encode("latin-1"), _checksum(data),
                           offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    font = out + body
    head_at = offset + sum(len(tables[t]) + (-len(tables[t]) % 4) for t in tags[: tags.index("head")])
    struct.pack_into(">I", font, head_at + 8, (0xB1B0AFBA - _checksum(bytes(font))) & 0xFFFFFFFF)
    return bytes(font)


@cache
def _font(file_name: str) -> _TrueTypeFont:
    return _TrueTypeFont(FONT_DIR / file_name)


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
    regular = _font(_REGULAR)
    missing = {c for c in codepoints if c not in regular.cmap and c > 0x20}
    with tempfile.TemporaryDirectory(prefix="invoice-fonts-") as folder:
        files = {"": (_REGULAR, codepoints), "B": (_BOLD, codepoints)}
        for style, (name, wanted) in files.items():
            path = os.path.join(folder, f"dejavu{style}.ttf")
            Path(path).write_bytes(_font(name).subset(wanted))
            pdf.add_font("dejavu", style, path)
            _keep_bounds(pdf, f"dejavu{style}")
        fallback = _font(_FALLBACK) if missing else None
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


