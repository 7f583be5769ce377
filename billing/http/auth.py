"""Authenticate every function call with a Google-signed OIDC ID token.

Callers (Cloud Scheduler's ``oidc_token``, the admin tooling) send
``Authorization: Bearer <ID token>``; see the "Authentication (every request)" section of
``CONTRACT.md``. Two modes, chosen by ``AUTH_MODE``:

``verify`` (default)
    The function is reachable without Cloud Run IAM and checks everything itself: the RS256
    signature against the certificates published at ``AUTH_CERTS_URL`` (Google's
    ``https://www.googleapis.com/oauth2/v1/certs`` by default, the local dev issuer in
    development), then the claims below. This is the manual validation Google describes in
    "Authenticating service-to-service" (Cloud Run / Cloud Functions docs, section "Validate
    the token") and in "Validating an ID token" (Google Identity, OpenID Connect docs).

``platform``
    The function is private behind Cloud Run IAM (``roles/run.invoker``). Cloud Run has already
    verified the Google signature, and -- as documented in Cloud Run's "Authenticating
    service-to-service" page -- *removes the signature* before the request reaches the
    container, replacing it with the literal ``SIGNATURE_REMOVED_BY_GOOGLE``. The function
    cannot re-check the signature, so it requires that literal (a token that still carries a
    signature did not go through Cloud Run IAM) and checks the same claims. When a caller sends
    both ``X-Serverless-Authorization`` and ``Authorization``, Cloud Run authorizes the former
    and passes the latter through untouched, so :func:`authorization_header` picks
    ``X-Serverless-Authorization`` in this mode.

Claim rules, identical in both modes (sources: RFC 7519 section 4.1, OpenID Connect Core 1.0
section 3.1.3.7, Google's "Validating an ID token"):

* ``iss`` is one of ``AUTH_ISSUERS`` (Google signs with ``https://accounts.google.com`` or
  ``accounts.google.com``);
* ``exp`` is in the future and ``iat`` is not in the future, both with ``clock_skew_seconds``
  of tolerance (``nbf``, if present, is honoured the same way); all three are finite numbers
  (not booleans, ``NaN``, ``Infinity`` or ``1e400``) between 0 and the end of year 9999;
* ``aud`` equals ``AUTH_AUDIENCE`` (a list ``aud`` must contain it);
* ``email`` is present and ``email_verified`` is true (Cloud Scheduler and service accounts
  always send both; Google documents ``email`` as the identity to authorize on);
* ``sub`` is present.

Authorization (:func:`authorize`; ``CONTRACT.md``, "Tenants: who may act on one") comes after
the token is verified: the lowercased ``email`` is a platform principal when it is in
``AUTH_ALLOWED_PRINCIPALS`` (any tenant, or all), else a tenant admin when it is in
``tenants/{t}.admins`` of the tenant the request names (that tenant only); otherwise 403
(``tenant_required``, ``tenant_not_allowed`` or ``permission_denied``), not 401.
``email_verified`` is required to be true for both kinds: Google's ID tokens carry it for
service accounts and Google accounts alike, and an unverified email proves no mailbox.

Errors: :class:`~billing.errors.Unauthenticated` (401) for any missing or invalid token,
:class:`~billing.errors.PermissionDenied` (403) for a valid token whose principal is not allowed,
:class:`CertificatesUnavailableError` (503) when the signing certificates cannot be fetched at all.
No message ever contains the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

import google.auth.crypt
import google.auth.transport
import google.auth.transport.requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from billing.errors import BillingError, PermissionDenied, Unauthenticated

__all__ = [
    "DEFAULT_CERTS_URL",
    "DEFAULT_ISSUERS",
    "SIGNATURE_REMOVED",
    "AuthSettings",
    "CertCache",
    "CertificatesUnavailableError",
    "Principal",
    "TenantDirectory",
    "authenticate",
    "authenticate_headers",
    "authorization_header",
    "authorize",
    "verify_headers",
    "verify_token",
]

logger = logging.getLogger(__name__)

DEFAULT_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
"""Google's ``{kid: PEM certificate}`` endpoint for the keys that sign ID tokens."""

DEFAULT_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
"""The two ``iss`` values Google uses for ID tokens ("Validating an ID token")."""

SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
"""What Cloud Run puts in place of the signature of a token it verified (platform mode)."""

AuthMode = Literal["verify", "platform"]
_MODES: tuple[AuthMode, ...] = ("verify", "platform")

_MAX_TOKEN_LENGTH = 16_384  # Google ID tokens are about 1 KB; refuse absurd input early.
_B64URL = re.compile(r"[A-Za-z0-9_-]*")  # used with fullmatch: "$" would allow a final newline
_CERTS_TIMEOUT_SECONDS = 10.0
_DEFAULT_CERTS_TTL = 300.0  # when the certs response has no Cache-Control max-age
_MAX_CERTS_TTL = 3600.0  # never trust a fetched key set longer than this
_MAX_STALE_AGE = 86_400.0  # when refetches fail, keep using old keys for a day at most
_MIN_REFETCH_INTERVAL = 10.0  # unknown kid / failed fetch: at most one fetch per interval
_MAX_CLAIM_ECHO = 120  # claim values quoted in error messages are cut to this length
_MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant we can represent


class CertificatesUnavailableError(BillingError):
    """503: the signing certificates could not be fetched and none are cached.

    This is an outage (of ``AUTH_CERTS_URL`` or the network), not a client error.
    """

    status = 503
    code = "auth_certificates_unavailable"


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
            mode=mode, audience=audience, allowed_principals=principals, certs_url=certs_url,
            issuers=issuers, clock_skew_seconds=skew, config_errors=tuple(errors),
        )


@dataclass(frozen=True)
class Principal:
    """The authenticated caller.

    Attributes:
        email: the token's ``email``, lowercased (what the allow-list matched).
        subject: the token's ``sub`` (for a service account, its numeric unique id).
        issuer: the token's ``iss``.
        tenant_id: ``None`` for a platform principal (``AUTH_ALLOWED_PRINCIPALS``), who may act
            on any tenant or on all of them; else the one tenant whose ``admins`` list holds
            ``email``, the only tenant this call may act on.

    """

    email: str
    subject: str
    issuer: str
    tenant_id: str | None = None

    @property
    def platform(self) -> bool:
        """Whether this is a platform principal (not limited to one tenant)."""
        return self.tenant_id is None


class TenantDirectory(Protocol):
    """Where :func:`authorize` looks up tenant admins (``tenants/{t}.admins``).

    The real one is ``billing.store``'s (``BillingStore.tenant_admins`` and
    ``administers_any``, adapted in ``billing.http.shell``); anything with these two methods works.
    """

    def admins(self, tenant_id: str) -> frozenset[str]:
        """The lowercased admin emails of ``tenant_id``; empty for no such tenant."""
        ...

    def administers_any(self, email: str) -> bool:
        """Whether ``email`` (lowercased) is in some tenant's ``admins``."""
        ...


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
        self, url: str, kid: str, request: google.auth.transport.Request | None = None,
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
        self, url: str, request: google.auth.transport.Request | None, now: float,
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


_CERT_CACHE = CertCache()
"""The process-wide cache :func:`authenticate` uses unless given another."""


def authorization_header(headers: Mapping[str, str], settings: AuthSettings) -> str | None:
    """Pick the header value that carries the caller's token.

    In ``platform`` mode ``X-Serverless-Authorization`` wins when present: Cloud Run IAM
    authorizes that header and passes ``Authorization`` through unverified (Cloud Run,
    "Authenticating service-to-service"), so trusting ``Authorization`` there would let any
    invoker impersonate an allowed principal. In ``verify`` mode only ``Authorization`` counts.
    Header names are matched case-insensitively.
    """
    if settings.mode == "platform":
        serverless = _header(headers, "X-Serverless-Authorization")
        if serverless is not None:
            return serverless
    return _header(headers, "Authorization")


def authenticate_headers(
    headers: Mapping[str, str], settings: AuthSettings, *,
    request: google.auth.transport.Request | None = None, cache: CertCache | None = None,
    tenant_id: str | None = None, directory: TenantDirectory | None = None,
) -> Principal:
    """:func:`authenticate` the token found by :func:`authorization_header` in ``headers``."""
    return authenticate(
        authorization_header(headers, settings), settings, request=request, cache=cache,
        tenant_id=tenant_id, directory=directory,
    )


def verify_headers(
    headers: Mapping[str, str], settings: AuthSettings, *,
    request: google.auth.transport.Request | None = None, cache: CertCache | None = None,
) -> Principal:
    """:func:`verify_token` on the token found by :func:`authorization_header` in ``headers``."""
    return verify_token(
        authorization_header(headers, settings), settings, request=request, cache=cache,
    )


def authorize(principal: Principal, settings: AuthSettings, tenant_id: str | None,
              directory: TenantDirectory | None) -> Principal:
    """Decide whether a verified caller may act, on ``tenant_id`` or (``None``) on every tenant.

    Rules (``CONTRACT.md``, "Tenants: who may act on one"), in order:

    1. an email in ``AUTH_ALLOWED_PRINCIPALS`` is a platform principal: allowed, any tenant or none;
    2. with a tenant named, an email in that tenant's ``admins`` is allowed, for that tenant only
       (one read: the tenant document; an unknown tenant has no admins);
    3. otherwise an email that is some tenant's admin gets 403 ``tenant_required`` (no tenant
       named) or ``tenant_not_allowed`` (another tenant named), whether or not that tenant exists;
    4. anyone else gets 403 ``permission_denied``.

    Without a ``directory`` only rule 1 applies. Nothing but tenant documents is read.

    Returns:
        ``principal`` with ``tenant_id`` set for a tenant admin (``None`` for a platform one).

    Raises:
        PermissionDenied: rules 3 and 4.

    """
    email = principal.email
    if email in settings.allowed_principals:
        return principal
    if directory is not None:
        if tenant_id is not None and email in directory.admins(tenant_id):
            return replace(principal, tenant_id=tenant_id)
        if directory.administers_any(email):
            if tenant_id is None:
                raise PermissionDenied(
                    f"{_quote(email)} administers a tenant: name it in X-Tenant-ID",
                    code="tenant_required")
            raise PermissionDenied(
                f"{_quote(email)} may not act on tenant {_quote(tenant_id)}",
                code="tenant_not_allowed")
    raise PermissionDenied(
        f"{_quote(email)} is not allowed to call this function (AUTH_ALLOWED_PRINCIPALS "
        "or a tenant's admins)")


def authenticate(
    authorization: str | None, settings: AuthSettings, *,
    request: google.auth.transport.Request | None = None, cache: CertCache | None = None,
    tenant_id: str | None = None, directory: TenantDirectory | None = None,
) -> Principal:
    """:func:`verify_token`, then :func:`authorize` for ``tenant_id`` with ``directory``.

    Without a ``directory`` only ``AUTH_ALLOWED_PRINCIPALS`` may call (403 otherwise).
    """
    principal = verify_token(authorization, settings, request=request, cache=cache)
    return authorize(principal, settings, tenant_id, directory)


def verify_token(
    authorization: str | None, settings: AuthSettings, *,
    request: google.auth.transport.Request | None = None, cache: CertCache | None = None,
) -> Principal:
    """Check the raw ``Authorization`` header value and return the caller (not yet authorized).

    Args:
        authorization: the header value, ``"Bearer <jwt>"``, or ``None`` when absent.
        settings: see :class:`AuthSettings`.
        request: the google-auth HTTP transport used to fetch certificates (``verify`` mode);
            a shared ``google.auth.transport.requests.Request`` by default.
        cache: the key cache (``verify`` mode); the process-wide one by default.

    Returns:
        The :class:`Principal` of a valid token, whoever it is (see :func:`authorize`).

    Raises:
        Unauthenticated: misconfigured settings, missing header, not ``Bearer``, malformed JWT,
            (verify mode) unsupported algorithm, unknown key id, bad signature, or a signature
            removed by Cloud Run, (platform mode) a signature still present; then wrong
            issuer, expired or not yet valid, wrong audience, no ``sub``, no ``email`` or
            ``email_verified`` not true.
        CertificatesUnavailableError: (verify mode) no certificates cached and the fetch failed.

    """
    _check_settings(settings)
    token = _bearer_token(authorization)
    header, payload, signing_input, signature = _split_jwt(token)
    if settings.mode == "verify":
        _verify_signature(header, signing_input, signature, settings, request, cache)
    elif signature != SIGNATURE_REMOVED:
        raise Unauthenticated(
            "AUTH_MODE=platform expects a token verified by Cloud Run IAM, whose signature "
            f"Cloud Run replaces with {SIGNATURE_REMOVED}; this token still carries a "
            "signature, so the request did not pass Cloud Run IAM (make the function private, "
            "or use AUTH_MODE=verify)"
        )
    return _check_claims(payload, settings, time.time())


def _check_settings(settings: AuthSettings) -> None:
    problems = list(settings.config_errors)
    if not settings.audience.strip() and not any("AUTH_AUDIENCE" in p for p in problems):
        problems.append("AUTH_AUDIENCE is not set")
    if settings.mode not in _MODES:
        problems.append("AUTH_MODE must be 'verify' or 'platform'")
    if problems:
        raise Unauthenticated(
            "authentication is not configured on this function, so every request is refused: "
            + "; ".join(problems)
        )


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise Unauthenticated(
            "missing Authorization header: send 'Authorization: Bearer <OIDC ID token>'"
        )
    parts = authorization.strip().split(None, 1)
    # RFC 7235 section 2.1: the auth-scheme is case-insensitive.
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise Unauthenticated(
            "the Authorization header must be 'Bearer <OIDC ID token>' (RFC 6750)"
        )
    token = parts[1].strip()
    if not token or len(token) > _MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise Unauthenticated("the bearer token is not a well-formed JWT")
    return token


def _b64url_decode(segment: str) -> bytes:
    if not _B64URL.fullmatch(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, str]:
    """Return header, payload, signing input and the raw (still encoded) signature segment."""
    segments = token.split(".")
    malformed = Unauthenticated("the bearer token is not a well-formed JWT")
    if len(segments) != 3 or not all(segments[:2]):
        raise malformed
    try:
        header = json.loads(_b64url_decode(segments[0]))
        payload = json.loads(_b64url_decode(segments[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise malformed from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise malformed
    signing_input = f"{segments[0]}.{segments[1]}".encode("ascii")
    return header, payload, signing_input, segments[2]


def _verify_signature(
    header: Mapping[str, Any], signing_input: bytes, signature: str, settings: AuthSettings,
    request: google.auth.transport.Request | None, cache: CertCache | None,
) -> None:
    if signature == SIGNATURE_REMOVED:
        raise Unauthenticated(
            f"the token's signature was removed by Cloud Run ({SIGNATURE_REMOVED}), so it "
            "cannot be verified here; a function behind Cloud Run IAM must use "
            "AUTH_MODE=platform"
        )
    if header.get("alg") != "RS256":
        # Google signs ID tokens with RS256 only; refusing anything else rules out "none"
        # and algorithm-confusion tokens.
        raise Unauthenticated("the token is not signed with RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("the token header has no key id (kid)")
    try:
        signature_bytes = _b64url_decode(signature)
    except (ValueError, binascii.Error):
        raise Unauthenticated("the bearer token is not a well-formed JWT") from None
    verifier = (cache or _CERT_CACHE).verifier(settings.certs_url, kid, request)
    if verifier is None:
        raise Unauthenticated(
            f"the token is signed by a key that {settings.certs_url} does not publish "
            f"(kid {_quote(kid)})"
        )
    try:
        valid = bool(verifier.verify(signing_input, signature_bytes))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise Unauthenticated("the token's signature does not verify")


def _check_claims(payload: Mapping[str, Any], settings: AuthSettings, now: float) -> Principal:
    issuer = payload.get("iss")
    if not isinstance(issuer, str) or issuer not in settings.issuers:
        raise Unauthenticated(
            f"the token's issuer {_quote(issuer)} is not accepted "
            f"(expected one of {', '.join(sorted(settings.issuers))})"
        )
    skew = settings.clock_skew_seconds
    exp = _numeric_claim(payload, "exp", required=True)
    iat = _numeric_claim(payload, "iat", required=True)
    nbf = _numeric_claim(payload, "nbf", required=False)
    if exp is not None and now > exp + skew:
        raise Unauthenticated(f"the token expired at {_iso(exp)} (now {_iso(now)})")
    if iat is not None and iat - skew > now:
        raise Unauthenticated(
            f"the token is issued in the future ({_iso(iat)}, now {_iso(now)}); "
            "check the clocks"
        )
    if nbf is not None and nbf - skew > now:
        raise Unauthenticated(f"the token is not valid before {_iso(nbf)} (now {_iso(now)})")
    audience = payload.get("aud")
    # RFC 7519 section 4.1.3: aud is a string or a list of strings that must contain ours.
    if not (audience == settings.audience
            or (isinstance(audience, list) and settings.audience in audience)):
        raise Unauthenticated(
            f"the token's audience {_quote(audience)} is not this function's audience "
            f"{_quote(settings.audience)}"
        )
    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the token has no subject (sub)")
    email = payload.get("email")
    if not isinstance(email, str) or not email.strip():
        raise Unauthenticated(
            "the token has no email claim (mint it for a service account, with the email "
            "included, e.g. gcloud's --include-email)"
        )
    verified = payload.get("email_verified")
    if not (verified is True or (isinstance(verified, str) and verified.lower() == "true")):
        raise Unauthenticated("the token's email is not verified (email_verified is not true)")
    return Principal(email=email.strip().lower(), subject=subject, issuer=issuer)


def _numeric_claim(payload: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    """A NumericDate claim (RFC 7519 section 2): seconds since the epoch, finite, in 0..9999.

    JSON lets a payload say ``1e400`` (``inf`` once parsed), ``NaN`` or ``Infinity`` (Python's
    parser accepts both), with which ``exp`` would never pass; ``true`` is an ``int`` in Python.
    """
    value = payload.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated(f"the token's {name} claim is missing or not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise Unauthenticated(f"the token's {name} claim is not a finite number")
    if not 0 <= value <= _MAX_NUMERIC_DATE:
        raise Unauthenticated(f"the token's {name} claim is out of range (0..{_MAX_NUMERIC_DATE})")
    return float(value)


def _download_keys(
    url: str, request: google.auth.transport.Request,
) -> tuple[dict[str, google.auth.crypt.Verifier], float]:
    """Fetch ``url`` (``{kid: PEM}`` or a JWKS); return verifiers by kid and the cache TTL."""
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
    verifiers: dict[str, google.auth.crypt.Verifier] = {}
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        for jwk in document["keys"]:
            pem = _jwk_to_pem(jwk)
            if pem is not None:
                _add_verifier(verifiers, jwk["kid"], pem)
    elif isinstance(document, dict):
        for kid, pem in document.items():
            if isinstance(pem, str):
                _add_verifier(verifiers, kid, pem)
    if not verifiers:
        raise CertificatesUnavailableError(f"{url} returned no usable RSA signing certificates")
    headers = cast(Mapping[str, str], response.headers or {})
    return verifiers, _cache_ttl(_header(headers, "Cache-Control"))


def _add_verifier(verifiers: dict[str, google.auth.crypt.Verifier], kid: str, pem: str) -> None:
    try:
        verifiers[kid] = google.auth.crypt.RSAVerifier.from_string(pem)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        logger.warning("ignoring an unparseable signing certificate (kid %s)", _quote(kid))


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
            e=int.from_bytes(_b64url_decode(e), "big"), n=int.from_bytes(_b64url_decode(n), "big"),
        )
        key = numbers.public_key()
    except (ValueError, binascii.Error):
        return None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
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


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _split_csv(raw: str, *, lower: bool = False) -> list[str]:
    items = [item.strip() for item in raw.split(",")]
    return [item.lower() if lower else item for item in items if item]


def _quote(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_CLAIM_ECHO else text[:_MAX_CLAIM_ECHO] + "..."


def _iso(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return str(epoch)
