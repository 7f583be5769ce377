"""How a function authenticates its callers: :class:`AuthSettings`, read from ``AUTH_*``.

Variables (``CONTRACT.md``, "Authentication (every request)"): ``AUTH_MODE``, ``AUTH_AUDIENCE``,
``AUTH_ALLOWED_PRINCIPALS``, ``AUTH_CERTS_URL``, ``AUTH_ISSUERS``, ``AUTH_CLOCK_SKEW_SECONDS``.
A bad or missing value never raises here: it is recorded in ``AuthSettings.config_errors`` and
``billing.http.auth.tokens.verify_token`` then refuses every request with 401 (fail closed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DEFAULT_CERTS_URL", "DEFAULT_ISSUERS", "MODES", "AuthMode", "AuthSettings"]

DEFAULT_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
"""Google's ``{kid: PEM certificate}`` endpoint for the keys that sign ID tokens."""

DEFAULT_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
"""The two ``iss`` values Google uses for ID tokens ("Validating an ID token")."""

AuthMode = Literal["verify", "platform"]

MODES: tuple[AuthMode, ...] = ("verify", "platform")
"""The values ``AUTH_MODE`` may take."""


@dataclass(frozen=True)
class AuthSettings:
    """How a function authenticates its callers; usually built by :meth:`from_env`.

    Attributes:
        mode: ``verify`` (check the signature here) or ``platform`` (Cloud Run IAM checked it).
        audience: the ``aud`` every token must carry, the function's URL. Empty means
            misconfigured: every request is then rejected with 401.
        allowed_principals: lowercased emails allowed to call; empty means nobody (403).
        certs_url: where ``verify`` mode fetches ``{kid: PEM}`` or a JWKS.
        issuers: accepted ``iss`` values.
        clock_skew_seconds: tolerance applied to ``exp``, ``iat`` and ``nbf``.
        config_errors: problems found by :meth:`from_env`; any of them makes every request
            fail with 401 and the problem in the message (fail closed, never open).

    """

    mode: AuthMode
    audience: str
    allowed_principals: frozenset[str]
    certs_url: str = DEFAULT_CERTS_URL
    issuers: frozenset[str] = DEFAULT_ISSUERS
    clock_skew_seconds: int = 30
    config_errors: tuple[str, ...] = field(default=())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AuthSettings:
        """Read the settings from the environment (``CONTRACT.md``, "Authentication").

        Variables: ``AUTH_MODE`` (``verify``/``platform``, default ``verify``),
        ``AUTH_AUDIENCE`` (required), ``AUTH_ALLOWED_PRINCIPALS`` (comma-separated emails),
        ``AUTH_CERTS_URL`` (default Google's), ``AUTH_ISSUERS`` (comma-separated; replaces the
        Google default, so list Google's too if both should be accepted),
        ``AUTH_CLOCK_SKEW_SECONDS`` (0..300, default 30).

        Never raises: a bad or missing value is recorded in ``config_errors`` and turns every
        request into a 401 that names the problem.
        """
        errors: list[str] = []
        raw_mode = environ.get("AUTH_MODE", "").strip().lower() or "verify"
        mode: AuthMode = "verify"
        if raw_mode == "platform":
            mode = "platform"
        elif raw_mode != "verify":
            errors.append("AUTH_MODE must be 'verify' or 'platform'")
        audience = environ.get("AUTH_AUDIENCE", "").strip()
        if not audience:
            errors.append("AUTH_AUDIENCE is not set")
        principals = frozenset(_split_csv(environ.get("AUTH_ALLOWED_PRINCIPALS", ""), lower=True))
        certs_url = environ.get("AUTH_CERTS_URL", "").strip() or DEFAULT_CERTS_URL
        issuers = frozenset(_split_csv(environ.get("AUTH_ISSUERS", ""))) or DEFAULT_ISSUERS
        skew = 30
        raw_skew = environ.get("AUTH_CLOCK_SKEW_SECONDS", "").strip()
        if raw_skew:
            try:
                skew = int(raw_skew)
            except ValueError:
                skew = -1
            if not 0 <= skew <= 300:
                errors.append("AUTH_CLOCK_SKEW_SECONDS must be an integer from 0 to 300")
                skew = 30
        return cls(
            mode=mode,
            audience=audience,
            allowed_principals=principals,
            certs_url=certs_url,
            issuers=issuers,
            clock_skew_seconds=skew,
            config_errors=tuple(errors),
        )


def _split_csv(raw: str, *, lower: bool = False) -> list[str]:
    items = [item.strip() for item in raw.split(",")]
    return [item.lower() if lower else item for item in items if item]
