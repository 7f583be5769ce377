"""The signing keys of ID tokens: fetched from ``AUTH_CERTS_URL``, cached per process.

The URL answers either Google's ``{kid: PEM certificate}`` map (``DEFAULT_CERTS_URL``) or a JWK
set (``{"keys": [...]}``, RFC 7517; RSA signing keys only, turned into PEM public keys). A key set
is kept for its ``Cache-Control: max-age`` (5 minutes without one, 1 hour at most, none for
``no-store``/``no-cache``); see :class:`CertCache` for refetches and outages.

Errors: :class:`~billing.errors.CertificatesUnavailableError` (503) when no keys can be had.
"""

from __future__ import annotations

import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import google.auth.crypt
import google.auth.transport
import google.auth.transport.requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from billing.errors import CertificatesUnavailableError
from billing.http.auth._shared import b64url_decode, header_value, quote

__all__ = ["DEFAULT_CERT_CACHE", "CertCache"]

logger = logging.getLogger("billing.http.auth")

_CERTS_TIMEOUT_SECONDS = 10.0
_DEFAULT_CERTS_TTL = 300.0  # when the certs response has no Cache-Control max-age
_MAX_CERTS_TTL = 3600.0  # never trust a fetched key set longer than this
_MAX_STALE_AGE = 86_400.0  # when refetches fail, keep using old keys for a day at most
_MIN_REFETCH_INTERVAL = 10.0  # unknown kid / failed fetch: at most one fetch per interval


@dataclass
class _KeySet:
    verifiers: dict[str, google.auth.crypt.Verifier]
    fetched_at: float  # monotonic time of the last successful fetch
    expires_at: float  # monotonic time after which a fetch is due


class CertCache:
    """Signing keys fetched from certificate URLs, cached in-process and thread-safe.

    A key set is reused until its ``Cache-Control: max-age`` runs out (5 minutes without one,
    1 hour at most), so a busy function does not fetch per request. A token with an unknown
    ``kid`` triggers one refetch (key rotation), at most once every 10 seconds per URL so that
    tokens with made-up key ids cannot turn every request into a fetch. When a refetch fails,
    the previous keys stay in use (logged as a warning) for up to a day.

    Args:
        clock: monotonic clock in seconds; injectable for tests.
        min_refetch_interval: the rate limit described above.

    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        min_refetch_interval: float = _MIN_REFETCH_INTERVAL,
    ) -> None:
        self._clock = clock
        self._min_refetch = min_refetch_interval
        self._lock = threading.Lock()
        self._sets: dict[str, _KeySet] = {}
        self._last_attempt: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        self._request: google.auth.transport.Request | None = None

    def clear(self) -> None:
        """Forget every cached key set."""
        with self._lock:
            self._sets.clear()
            self._last_attempt.clear()
            self._last_error.clear()

    def verifier(
        self,
        url: str,
        kid: str,
        request: google.auth.transport.Request | None = None,
    ) -> google.auth.crypt.Verifier | None:
        """Return the verifier for ``kid`` from ``url``'s key set, fetching when due.

        Returns ``None`` when the key id is unknown even after the allowed refetch.

        Raises:
            CertificatesUnavailableError: nothing is cached for ``url`` and the fetch failed.

        """
        with self._lock:
            now = self._clock()
            keys = self._sets.get(url)
            if keys is None:
                keys = self._fetch(url, request, now, stale=None)
            elif now >= keys.expires_at or kid not in keys.verifiers:
                keys = self._fetch(url, request, now, stale=keys)
            return keys.verifiers.get(kid)

    def _fetch(
        self,
        url: str,
        request: google.auth.transport.Request | None,
        now: float,
        stale: _KeySet | None,
    ) -> _KeySet:
        if stale is not None and now - stale.fetched_at > _MAX_STALE_AGE:
            stale = None  # an outage this long must not keep retired keys alive
            self._sets.pop(url, None)
        last = self._last_attempt.get(url)
        if last is not None and now - last < self._min_refetch:
            # Fetched (or failed to) moments ago: do not hammer the endpoint.
            if stale is not None:
                return stale
            raise CertificatesUnavailableError(self._last_error.get(url, f"no keys from {url}"))
        self._last_attempt[url] = now
        try:
            verifiers, ttl = _download_keys(url, request or self._default_request())
        except CertificatesUnavailableError as exc:
            self._last_error[url] = exc.message
            if stale is None:
                raise
            logger.warning("keeping cached signing keys for %s: %s", url, exc.message)
            return stale
        keys = _KeySet(verifiers=verifiers, fetched_at=now, expires_at=now + ttl)
        self._sets[url] = keys
        return keys

    def _default_request(self) -> google.auth.transport.Request:
        if self._request is None:
            self._request = google.auth.transport.requests.Request()
        return self._request


DEFAULT_CERT_CACHE = CertCache()
"""The process-wide cache ``billing.http.auth.tokens`` uses unless given another."""


def _download_keys(
    url: str,
    request: google.auth.transport.Request,
) -> tuple[dict[str, google.auth.crypt.Verifier], float]:
    """Fetch ``url`` (``{kid: PEM}`` or a JWKS); return verifiers by kid and the cache TTL.

    Raises:
        CertificatesUnavailableError: the fetch failed, or it gave no usable RSA key.

    """
    document, headers = _fetch_document(url, request)
    verifiers = _parse_key_set(document)
    if not verifiers:
        raise CertificatesUnavailableError(f"{url} returned no usable RSA signing certificates")
    return verifiers, _cache_ttl(header_value(headers, "Cache-Control"))


def _fetch_document(
    url: str,
    request: google.auth.transport.Request,
) -> tuple[object, Mapping[str, str]]:
    """GET ``url``: its JSON body (``None`` when not JSON) and its response headers.

    Raises:
        CertificatesUnavailableError: the request failed or the status is not 200.

    """
    try:
        response = request(url, method="GET", timeout=_CERTS_TIMEOUT_SECONDS)
    except Exception as exc:  # google.auth.exceptions.TransportError and friends
        raise CertificatesUnavailableError(
            f"could not fetch signing certificates from {url}: {type(exc).__name__}"
        ) from exc
    if response.status != 200:
        raise CertificatesUnavailableError(
            f"could not fetch signing certificates from {url}: HTTP {response.status}"
        )
    try:
        document = json.loads(response.data)
    except (ValueError, UnicodeDecodeError):
        document = None
    return document, cast(Mapping[str, str], response.headers or {})


def _parse_key_set(document: object) -> dict[str, google.auth.crypt.Verifier]:
    """Verifiers by kid from a JWK set (``{"keys": [...]}``) or a ``{kid: PEM}`` map.

    Keys that are not RSA signing keys, or do not parse, are skipped (the latter logged).
    """
    verifiers: dict[str, google.auth.crypt.Verifier] = {}
    if not isinstance(document, dict):
        return verifiers
    if isinstance(document.get("keys"), list):
        for jwk in document["keys"]:
            pem = _jwk_to_pem(jwk)
            if pem is not None:
                _add_verifier(verifiers, jwk["kid"], pem)
        return verifiers
    for kid, pem in document.items():
        if isinstance(pem, str):
            _add_verifier(verifiers, kid, pem)
    return verifiers


def _add_verifier(verifiers: dict[str, google.auth.crypt.Verifier], kid: str, pem: str) -> None:
    try:
        verifiers[kid] = google.auth.crypt.RSAVerifier.from_string(pem)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        logger.warning("ignoring an unparseable signing certificate (kid %s)", quote(kid))


def _jwk_to_pem(jwk: object) -> str | None:
    """Turn an RSA signing JWK (RFC 7517/7518) into a PEM public key; ``None`` to skip it."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
        return None
    kid, n, e = jwk.get("kid"), jwk.get("n"), jwk.get("e")
    if not (isinstance(kid, str) and isinstance(n, str) and isinstance(e, str)):
        return None
    try:
        numbers = rsa.RSAPublicNumbers(
            e=int.from_bytes(b64url_decode(e), "big"),
            n=int.from_bytes(b64url_decode(n), "big"),
        )
        key = numbers.public_key()
    except (ValueError, binascii.Error):
        return None
    return key.public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    ).decode("ascii")


def _cache_ttl(cache_control: str | None) -> float:
    """Seconds to keep a key set: ``max-age`` (capped at an hour), 0 for no-store/no-cache."""
    if not cache_control:
        return _DEFAULT_CERTS_TTL
    directives = [d.strip().lower() for d in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age" and value.strip().isdigit():
            return min(float(value.strip()), _MAX_CERTS_TTL)
    return _DEFAULT_CERTS_TTL
