"""The HTTP shell every function shares: method, authentication, body, errors, logging.

Order of checks, each answering before anything is written:
1. Method: ``GET`` (health, and only without a body) and ``POST``; anything else is 405.
2. Authentication (``billing.http.auth.verify_token``): 401 for no or an invalid token. The 401 and
   503 answers are generic; the reason goes to the log only.
3. Body: empty means ``{}``; otherwise a JSON object (duplicate keys and NaN refused): 400
   otherwise. Cloud Scheduler sends its body as ``application/octet-stream`` unless told
   otherwise, so the content type is not required.
4. The tenant: ``X-Tenant-ID`` header or ``tenant_id`` field (they must agree when both are
   given; ``None`` means every active tenant).
5. Authorization (``billing.http.auth.authorize``) for that tenant: platform principals
   (``AUTH_ALLOWED_PRINCIPALS``) always, ``tenants/{t}.admins`` only for ``t``; 403
   ``tenant_required``, ``tenant_not_allowed`` or ``permission_denied`` otherwise. Nothing but
   the tenant document has been read at this point.
6. The fields: all known to the function and valid, 400 otherwise. Then the function runs.

Errors (:func:`error_response`, the only producer of the envelope, also used by
``billing.http.webhook``): ``{"error": {"code", "message"}, "run_id"}`` with the status of the
``BillingError`` subclass; anything unexpected is logged with its stack trace and answered 500
with the run id.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import flask

from billing.errors import (
    MAX_ECHO,
    BadRequest,
    BillingError,
    CertificatesUnavailableError,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthenticated,
    echo,
)
from billing.http.auth import (
    AuthSettings,
    Principal,
    TenantDirectory,
    authorize,
    verify_headers,
)
from billing.logs import get_logger, log_context
from billing.pricing.periods import require_aware, utc_now
from billing.store.clients import firestore_client
from billing.store.firestore_store import BillingStore

MAX_BODY_BYTES = 262_144
"""Largest request body the OIDC functions read (256 KiB; their requests are a few hundred bytes):
read before authorization, so an unbounded one would let any verified caller make an instance
buffer megabytes (413 ``body_too_large`` past it)."""
Validator = Callable[[Any], Any]
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,254}")
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MIN_YEAR, MAX_YEAR = 1970, 9999
"""Instants in requests must fall in these years, in UTC (``CONTRACT.md``)."""
log = get_logger("billing.http")


@dataclass(frozen=True)
class Call:
    """One authenticated, validated request.

    Attributes:
        body: the validated fields (only those present), normalised by their validators.
        tenant_id: from ``X-Tenant-ID`` or ``tenant_id``; ``None`` means every active tenant.
        principal: the authenticated caller.
        run_id: this request's id (hex), in every log line and the response.
        request_id: the caller's ``X-Request-ID`` header (``None`` when absent): a
            ``billing_admin`` review action retried with the same id is a no-op (issue 10).

    """

    body: Mapping[str, Any]
    tenant_id: str | None
    principal: Principal
    run_id: str
    request_id: str | None = None


def request_id_header(headers: Mapping[str, str]) -> str | None:
    """The ``X-Request-ID`` header (case-insensitive name), checked as an id; ``None`` if absent.

    Raises:
        BadRequest: (``invalid_field``) not an id of letters, digits and ``_.:@+-``.

    """
    value = next((v for k, v in headers.items() if k.lower() == "x-request-id"), None)
    if value is None:
        return None
    try:
        return identifier(value)
    except BadRequest as exc:
        raise BadRequest(f"X-Request-ID: {exc.message}", code=exc.code) from None


def boolean(value: Any) -> bool:
    """Validator: a JSON boolean."""
    if not isinstance(value, bool):
        raise BadRequest(f"must be true or false, got {echo(value)}", code="invalid_field")
    return value


def identifier(value: Any) -> str:
    """Validator: a document id (letters, digits and ``_ . : @ + -``, at most 255 characters).

    The whole string must match (``re.fullmatch``, ASCII ``[0-9]``): a trailing newline or a
    non-ASCII digit is refused. The first character is a letter or digit, so Firestore's
    reserved ids (``.``, ``..``, ``__x__``) can never be named.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise BadRequest(
            f"must be an id of letters, digits and _.:@+-, got {echo(value)}", code="invalid_field"
        )
    return value


def text(value: Any) -> str:
    r"""Validator: a string Firestore can store (checked further by the function).

    Lone surrogates (which JSON's ``\ud800`` escapes can produce, and which UTF-8 and so
    Firestore cannot encode) and control characters (C0, DEL, C1) are refused
    (``CONTRACT.md``, "Bounds on request fields").
    """
    if not isinstance(value, str):
        raise BadRequest(f"must be a string, got {echo(value)}", code="invalid_field")
    if _UNSAFE_TEXT.search(value):
        raise BadRequest(
            f"must not contain control characters or lone surrogates, got {echo(value)}", code="invalid_field"
        )
    return value


def rfc3339(value: Any) -> datetime:
    """Validator: an RFC 3339 timestamp *with* an offset (``2026-11-01T00:00:00Z``).

    The instant, converted to UTC, must fall in the years 1970..9999 (``CONTRACT.md``, "Bounds
    on request fields"): ``0001-01-01T00:00:00+05:00`` or ``9999-12-31T23:59:59-05:00`` cannot
    be held by a UTC datetime, nor stored by Firestore. The value keeps its offset.
    """
    parsed = None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and (parsed.tzinfo is None or "T" not in value.upper()):
            parsed = None
    if parsed is None:
        raise BadRequest(
            f"must be an RFC 3339 timestamp with an offset, got {echo(value)}", code="invalid_field"
        )
    try:
        year = parsed.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise BadRequest(
            f"must fall in the years {MIN_YEAR}..{MAX_YEAR} in UTC, got {echo(value)}", code="invalid_field"
        )
    return parsed


class Clock:
    """The instant the HTTP functions take as "now": the real time unless a test sets one.

    The one clock seam at the HTTP boundary (issue 9): each handler reads :meth:`now` once per
    request and passes it down (``RunContext.now``, ``DunningContext.now``, the webhook's payment
    time), and checks ``as_of`` against it. A test that runs a function "on" another day calls
    :meth:`set` (the ``clock`` fixture of ``tests/conftest.py`` resets it after the test), so no
    test depends on today's date. Token ``exp``/``iat`` and Stripe signature timestamps keep the
    real time: they are compared with instants other clocks minted.
    """

    def __init__(self) -> None:
        self._fixed: datetime | None = None

    def now(self) -> datetime:
        """The set instant, else ``billing.pricing.periods.utc_now()`` (aware, UTC)."""
        return self._fixed if self._fixed is not None else utc_now()

    def set(self, instant: datetime | None) -> None:
        """Make :meth:`now` answer ``instant`` (aware); ``None`` goes back to the real time.

        Raises:
            ValueError: ``instant`` is naive.

        """
        self._fixed = None if instant is None else require_aware(instant, "instant")


clock = Clock()
"""The process's HTTP clock (one per process, like the function instance)."""


AS_OF_SKEW = timedelta(minutes=5)
"""How far in the future an ``as_of`` may be (clock skew between the caller and us)."""


def check_as_of(as_of: datetime | None, now: datetime) -> None:
    """Refuse an ``as_of`` more than :data:`AS_OF_SKEW` after ``now`` (``CONTRACT.md``).

    A future ``as_of`` would let a caller act on a date that has not come: invoice periods whose
    usage is not in yet (``generate_invoices``), suspend customers not yet due (``dunning``).

    Raises:
        BadRequest: (``as_of_in_future``).

    """
    if as_of is not None and as_of > now + AS_OF_SKEW:
        raise BadRequest(
            f"as_of {as_of.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})",
            code="as_of_in_future",
        )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(f"duplicate field {echo(key)}", code="invalid_json")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not valid JSON", code="invalid_json")


def decode_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, unvalidated; ``{}`` when empty.

    Raises:
        BadRequest: not UTF-8 JSON (``invalid_json``: also duplicate keys, ``NaN``, an integer
            over 4300 digits), or not an object (``invalid_body``).

    """
    if not raw.strip():
        return {}
    try:
        data = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:  # its message gives a position, never the input
        raise BadRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None
    except ValueError:  # not UTF-8, or an integer longer than Python converts (4300 digits)
        raise BadRequest(
            "body is not valid JSON: not UTF-8, or a number too long", code="invalid_json"
        ) from None
    except RecursionError:  # nested deeper than the parser recurses: bad input, never a 500
        raise BadRequest("body is not valid JSON: nested too deep", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest(f"body must be a JSON object, got {type(data).__name__}", code="invalid_body")
    return data


def validate_fields(data: Mapping[str, Any], fields: Mapping[str, Validator]) -> dict[str, Any]:
    """Validate a decoded body against ``fields`` (plus ``tenant_id``); ``null`` means absent.

    Raises:
        BadRequest: an unknown field (``unknown_field``) or an invalid value.

    """
    allowed = {**fields, "tenant_id": identifier}
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        listed = ", ".join(unknown)
        if len(listed) > MAX_ECHO:
            listed = f"{listed[:MAX_ECHO]}... ({len(unknown)} fields)"
        raise BadRequest(
            f"unknown field(s): {listed}; allowed: {', '.join(sorted(allowed))}", code="unknown_field"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        try:
            out[key] = allowed[key](value)
        except BadRequest as exc:
            raise BadRequest(f"{key}: {exc.message}", code=exc.code) from None
    return out


def parse_body(raw: bytes, fields: Mapping[str, Validator]) -> dict[str, Any]:
    """:func:`decode_body` then :func:`validate_fields`; ``{}`` when empty.

    Raises:
        BadRequest: not UTF-8 JSON, not an object, an unknown field, or an invalid value.

    """
    return validate_fields(decode_body(raw), fields)


def read_capped(request: flask.Request, cap: int) -> bytes:
    """The request body, reading at most ``cap + 1`` bytes from the stream.

    ``Content-Length`` alone is no bound: a chunked request has none, and gunicorn (the server
    Cloud Run runs functions-framework with) hands its decoded stream to the application
    as it is. A declared length over ``cap`` is refused before reading.

    Raises:
        PayloadTooLarge: the body is longer than ``cap`` bytes (413 ``body_too_large``).

    """
    if (request.content_length or 0) > cap:
        raise PayloadTooLarge(f"body over {cap} bytes (Content-Length {request.content_length})")
    stream = request.stream
    payload = b""
    while len(payload) <= cap:
        chunk = stream.read(cap + 1 - len(payload))
        if not chunk:
            return payload
        payload += chunk
    raise PayloadTooLarge(f"body over {cap} bytes")


def _has_tenant_header(headers: Mapping[str, str]) -> bool:
    """Whether the request carries ``X-Tenant-ID`` (matched case-insensitively)."""
    return any(k.lower() == "x-tenant-id" for k in headers)


def request_tenant(headers: Mapping[str, str], data: Mapping[str, Any]) -> str | None:
    """The tenant a request names: ``X-Tenant-ID`` or the body's ``tenant_id`` (``None``: all).

    Header names are matched case-insensitively (HTTP field names are, RFC 9110 section 5.1).

    Both name the run's tenant; when both are given they must agree. Authorization scopes a tenant
    admin by the header alone (``handle``).

    Raises:
        BadRequest: (``invalid_field``) either is not an id, or they disagree.

    """
    header = next((v for k, v in headers.items() if k.lower() == "x-tenant-id"), None)
    in_body = data.get("tenant_id")
    if in_body is not None:
        try:
            in_body = identifier(in_body)
        except BadRequest as exc:
            raise BadRequest(f"tenant_id: {exc.message}", code=exc.code) from None
    if header is None:
        return in_body
    try:
        header = identifier(header)
    except BadRequest as exc:
        raise BadRequest(f"X-Tenant-ID: {exc.message}", code=exc.code) from None
    if in_body is not None and in_body != header:
        raise BadRequest("X-Tenant-ID and tenant_id disagree", code="invalid_field")
    return header


class _ProcessTenantDirectory:
    """The tenant directory of ``billing.http.auth`` on this process's Firestore (the store's).

    The client is built on first use: a platform principal's request never touches Firestore
    for authorization.
    """

    def admins(self, tenant_id: str) -> frozenset[str]:
        return BillingStore(firestore_client()).tenant_admins(tenant_id)

    def administers_any(self, email: str) -> bool:
        return BillingStore(firestore_client()).administers_any(email)


def tenant_directory() -> TenantDirectory:
    """The tenant-admin lookup (``tenants/{t}.admins``) that :func:`handle` authorizes with.

    The one place the shell chooses where tenant admins are read from.
    """
    return _ProcessTenantDirectory()


def json_response(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> flask.Response:
    """A JSON response with ``Cache-Control: no-store``."""
    response = flask.Response(json.dumps(body, default=str), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


GENERIC_401 = "invalid or missing credentials"
GENERIC_503 = "authentication temporarily unavailable"
AUTH_RETRY_AFTER_SECONDS = 10


class Accepted(dict[str, Any]):
    """A handler's body for work that goes on after the answer: sent as 202 Accepted (fan-out)."""


StatusReader = Callable[[Call], Mapping[str, Any]]
"""``status(call)``: the answer to ``GET ?run_id=`` (``call.body == {"run_id": id}``)."""


def handle(
    request: flask.Request,
    *,
    function: str,
    fields: Mapping[str, Validator],
    run: Callable[[Call], Mapping[str, Any]],
    status: StatusReader | None = None,
) -> flask.Response:
    """Serve one request of ``function``: checks, then ``run(call)`` for a POST.

    With ``status``, ``GET ?run_id=<id>`` (authenticated and authorized like a POST) answers
    ``status(call)``: a fanned-out run's record (contract, "Fan-out"). A body that is an
    ``Accepted`` is answered 202. Every failure is answered by :func:`error_response` (through
    :func:`respond`).
    """
    return respond(function, lambda run_id: _serve(request, function, fields, run, run_id, status))


def respond(function: str, serve: Callable[[str], flask.Response]) -> flask.Response:
    """Call ``serve(run_id)`` with a new run id in the log context; answer any error it raises.

    The one wrapper of every HTTP function, OIDC ones (:func:`handle`) and ``stripe_webhook``
    (``billing.http.webhook``) alike, so that all share :func:`error_response`.
    """
    run_id = uuid.uuid4().hex
    with log_context(run_id=run_id):
        try:
            return serve(run_id)
        except Exception as exc:  # every failure gets the contract's envelope, never a traceback
            return error_response(exc, run_id, function)


def error_response(exc: Exception, run_id: str, function: str) -> flask.Response:
    """The contract's error answer ``{"error": {"code", "message"}, "run_id"}`` for ``exc``, logged.

    The only producer of that envelope. The status is the ``BillingError`` subclass's
    (``billing.errors``); 405 carries ``Allow: GET, POST``. A caller who is not authenticated
    learns nothing about why: every 401 says :data:`GENERIC_401` (with ``WWW-Authenticate:
    Bearer``, RFC 6750) and every 503 from the signing-certificate fetch says
    :data:`GENERIC_503` (with ``Retry-After``); the reason (expired, wrong audience, which
    certificate URL failed...) is logged with the run id. Anything that is not a
    ``BillingError`` is logged with its stack trace and answered 500 ``internal``.
    """
    if isinstance(exc, Unauthenticated):
        log.warning(
            "request unauthenticated",
            extra={"function": function, "status": 401, "code": exc.code, "error": exc.message},
        )
        return _envelope(run_id, 401, exc.code, GENERIC_401, {"WWW-Authenticate": 'Bearer realm="billing"'})
    if isinstance(exc, CertificatesUnavailableError):
        log.error(
            "authentication unavailable",
            extra={"function": function, "status": 503, "code": exc.code, "error": exc.message},
        )
        return _envelope(
            run_id, 503, "auth_unavailable", GENERIC_503, {"Retry-After": str(AUTH_RETRY_AFTER_SECONDS)}
        )
    if not isinstance(exc, BillingError):
        log.error("unexpected failure", exc_info=exc, extra={"function": function})
        return _envelope(run_id, 500, "internal", f"internal error (run_id {run_id})")
    extra = {"function": function, "status": exc.status, "code": exc.code, "error": exc.message}
    if exc.status >= 500:
        log.error("request failed", exc_info=exc, extra=extra)
    else:
        log.warning("request refused", extra=extra)
    headers = {"Allow": "GET, POST"} if exc.status == 405 else None
    return _envelope(run_id, exc.status, exc.code, exc.message, headers)


def _envelope(
    run_id: str, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> flask.Response:
    return json_response({"error": {"code": code, "message": message}, "run_id": run_id}, status, headers)


def health_response(function: str, run_id: str) -> flask.Response:
    """The answer to a ``GET`` (health check): ``{"status": "ok", "function", "run_id"}``."""
    return json_response({"status": "ok", "function": function, "run_id": run_id})


def _serve(
    request: flask.Request,
    function: str,
    fields: Mapping[str, Validator],
    run: Callable[[Call], Mapping[str, Any]],
    run_id: str,
    status: StatusReader | None = None,
) -> flask.Response:
    """The checks of :func:`handle` in order, then the function; raises ``BillingError``."""
    if request.method not in ("GET", "POST"):
        raise MethodNotAllowed(f"{echo(request.method)} is not allowed; use POST (or GET for health)")
    settings = AuthSettings.from_env()
    principal = verify_headers(dict(request.headers), settings)
    raw = read_capped(request, MAX_BODY_BYTES)
    if request.method == "GET" and raw:
        raise BadRequest("GET takes no body; POST the request", code="invalid_body")
    data = decode_body(raw)
    tenant_id = request_tenant(dict(request.headers), data)
    # Before anything is read but the tenant document, and before any field is checked. A tenant
    # admin is scoped by X-Tenant-ID alone (CONTRACT.md); the body's tenant_id serves platform
    # principals, so authorization sees the header's tenant only.
    named = tenant_id if _has_tenant_header(dict(request.headers)) else None
    principal = authorize(principal, settings, named, tenant_directory())
    if request.method == "GET":
        if status is not None and "run_id" in request.args:
            asked = {"run_id": identifier(request.args["run_id"])}
            return json_response(
                status(Call(body=asked, tenant_id=tenant_id, principal=principal, run_id=run_id))
            )
        return health_response(function, run_id)
    body = validate_fields(data, fields)
    body.pop("tenant_id", None)
    request_id = request_id_header(dict(request.headers))
    call = Call(body=body, tenant_id=tenant_id, principal=principal, run_id=run_id, request_id=request_id)
    with log_context(tenant_id=tenant_id):
        log.info(
            "request accepted",
            extra={
                "function": function,
                "principal": principal.email,
                "tenant_admin": not principal.platform,
                "fields": sorted(body),
            },
        )
        result = run(call)
    return json_response(result, 202 if isinstance(result, Accepted) else 200)
