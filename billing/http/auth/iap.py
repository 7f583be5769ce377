"""Verify the Identity-Aware Proxy assertion in front of ``billing_console``.

IAP signs every request it lets through with ``X-Goog-IAP-JWT-Assertion``: a JWT signed with
ES256 by a key of Google's IAP JWK set (``IAP_CERTS_URL``, default
``https://www.gstatic.com/iap/verify/public_key-jwk``), issuer ``https://cloud.google.com/iap``,
audience ``IAP_AUDIENCE`` (``/projects/PROJECT_NUMBER/global/backendServices/ID`` behind a load
balancer, ``/projects/PROJECT_NUMBER/locations/REGION/services/NAME`` for IAP on Cloud Run),
and the user's ``email`` (Google, "Securing your app with signed headers").

``verify_assertion`` checks, in this order: present; header ``alg`` is ``ES256`` with a ``kid``
of the key set (the EC P-256 keys converted to PEM here); signature, ``exp``/``iat`` (with
``clock_skew_seconds``) and ``aud`` through ``google.auth.jwt.decode``; ``iss``; an ``email``.
Any failure is ``Unauthenticated`` (401; the reason is logged, never answered); a key set that
cannot be fetched and is not cached is ``CertificatesUnavailableError`` (503).

The caller is then authorized like every function (``billing.http.auth.tokens.authorize``):
``AUTH_ALLOWED_PRINCIPALS`` are platform principals, ``tenants/{t}.admins`` act on ``t`` only.
Locally, ``devtools.iap_proxy`` signs the same assertion with its own key and serves its JWK set.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import google.auth.jwt
import google.auth.transport
import google.auth.transport.requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from billing.errors import CertificatesUnavailableError, Unauthenticated
from billing.http.auth._shared import b64url_decode
from billing.http.auth.tokens import Principal
from billing.logs import get_logger

IAP_HEADER = "X-Goog-IAP-JWT-Assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
DEFAULT_IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
KEYS_TTL_SECONDS = 3600.0
MIN_REFETCH_SECONDS = 30.0
log = get_logger("billing.auth.iap")


@dataclass(frozen=True)
class IapSettings:
    """``IAP_AUDIENCE`` (required: empty refuses everyone), ``IAP_CERTS_URL``, clock skew (s)."""

    audience: str
    certs_url: str = DEFAULT_IAP_CERTS_URL
    clock_skew_seconds: int = 30

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> IapSettings:
        """Read ``IAP_AUDIENCE`` and ``IAP_CERTS_URL``."""
        return cls(
            audience=(environ.get("IAP_AUDIENCE") or "").strip(),
            certs_url=(environ.get("IAP_CERTS_URL") or "").strip() or DEFAULT_IAP_CERTS_URL,
        )


def ec_jwk_to_pem(jwk: Mapping[str, Any]) -> str | None:
    """An EC P-256 signing JWK (RFC 7518 section 6.2) as a PEM public key; ``None`` to skip it."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or jwk.get("alg", "ES256") != "ES256":
        return None
    try:
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(b64url_decode(str(jwk["x"])), "big"),
            int.from_bytes(b64url_decode(str(jwk["y"])), "big"),
            ec.SECP256R1(),
        )
        key = numbers.public_key()
    except (KeyError, ValueError):
        return None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class IapKeys:
    """The IAP JWK set of one URL as ``{kid: PEM}``, cached ``KEYS_TTL_SECONDS``.

    An unknown ``kid`` refetches at most every ``MIN_REFETCH_SECONDS``; during an outage the
    keys already cached are used. ``fetch(url) -> JSON document`` is the test seam.
    """

    def __init__(
        self, fetch: Callable[[str], object] | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self._fetch = fetch or _http_fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, str]] = {}
        self._fetched_at: dict[str, float] = {}

    def pems(self, url: str, kid: str) -> dict[str, str]:
        """The PEMs of ``url``, refreshed when stale or when ``kid`` is unknown (rate-limited).

        Raises:
            CertificatesUnavailableError: nothing cached and the fetch failed.

        """
        with self._lock:
            now = self._clock()
            cached, at = self._keys.get(url), self._fetched_at.get(url, float("-inf"))
            due = cached is None or now - at >= KEYS_TTL_SECONDS
            unknown = cached is not None and kid not in cached and now - at >= MIN_REFETCH_SECONDS
            if due or unknown:
                try:
                    self._keys[url] = _parse(self._fetch(url))
                    self._fetched_at[url] = now
                except CertificatesUnavailableError:
                    if cached is None:
                        raise
                    log.warning("IAP keys could not be refreshed; using the cached ones")
            return self._keys[url]


def _parse(document: object) -> dict[str, str]:
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list):
        raise CertificatesUnavailableError("the IAP key set is not a JWK set")
    pems = {
        str(k["kid"]): pem
        for k in keys
        if isinstance(k, Mapping) and "kid" in k and (pem := ec_jwk_to_pem(k))
    }
    if not pems:
        raise CertificatesUnavailableError("the IAP key set has no ES256 key")
    return pems


def _http_fetch(url: str) -> object:
    request = google.auth.transport.requests.Request()
    try:
        response = request(url, method="GET", timeout=10)
    except google.auth.exceptions.TransportError as exc:
        raise CertificatesUnavailableError(f"could not fetch the IAP keys: {type(exc).__name__}") from exc
    if response.status != 200:
        raise CertificatesUnavailableError(f"could not fetch the IAP keys: HTTP {response.status}")
    try:
        return json.loads(response.data)
    except ValueError as exc:
        raise CertificatesUnavailableError("the IAP key set is not JSON") from exc


DEFAULT_KEYS = IapKeys()


def _refuse(reason: str) -> Unauthenticated:
    log.warning("IAP assertion refused", extra={"reason": reason})
    return Unauthenticated("invalid or missing IAP assertion")


def verify_assertion(assertion: str | None, settings: IapSettings, keys: IapKeys = DEFAULT_KEYS) -> Principal:
    """Verify ``X-Goog-IAP-JWT-Assertion``; return the user as an unscoped ``Principal``.

    Raises:
        Unauthenticated: absent, malformed, not ES256, unknown key, bad signature, expired,
            wrong audience or issuer, no email (the reason is logged only).
        CertificatesUnavailableError: the key set cannot be fetched and none is cached.

    """
    if not settings.audience:
        raise _refuse("IAP_AUDIENCE is not set")
    if not assertion or len(assertion) > 16384:
        raise _refuse("no assertion")
    try:
        header = json.loads(b64url_decode(assertion.split(".", 1)[0]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _refuse("malformed header") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256" or not isinstance(header.get("kid"), str):
        raise _refuse("not an ES256 assertion with a kid")
    pems = keys.pems(settings.certs_url, header["kid"])
    if header["kid"] not in pems:
        raise _refuse("unknown key id")
    try:
        claims = google.auth.jwt.decode(  # type: ignore[no-untyped-call]
            assertion,
            certs=pems,
            audience=settings.audience,
            clock_skew_in_seconds=settings.clock_skew_seconds,
        )
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise _refuse(f"{type(exc).__name__}: {str(exc)[:120]}") from None
    if claims.get("iss") != IAP_ISSUER:
        raise _refuse("wrong issuer")
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise _refuse("no email")
    return Principal(email=email.lower(), subject=str(claims.get("sub") or ""), issuer=IAP_ISSUER)


__all__ = [
    "DEFAULT_IAP_CERTS_URL",
    "IAP_HEADER",
    "IAP_ISSUER",
    "IapKeys",
    "IapSettings",
    "ec_jwk_to_pem",
    "verify_assertion",
]
