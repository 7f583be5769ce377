"""Small helpers the certificate cache and the token checks share (no state, no I/O)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping

__all__ = ["b64url_decode", "header_value", "quote"]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")  # used with fullmatch: "$" would allow a final newline
_MAX_CLAIM_ECHO = 120  # claim values quoted in error messages are cut to this length


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url (RFC 7515 section 2), the encoding of JWT segments and JWKs.

    Raises:
        ValueError: a character outside the base64url alphabet (``binascii.Error``, a
            ``ValueError``, for a bad length).

    """
    if not _B64URL.fullmatch(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name``, matched case-insensitively (RFC 9110 section 5.1)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def quote(value: object) -> str:
    """Quote a claim or key id for a message: ``repr`` of a string, else JSON; 120 characters."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_CLAIM_ECHO else text[:_MAX_CLAIM_ECHO] + "..."
