"""billing.http.auth and devtools.dev_issuer: OIDC checks against a local issuer (no emulator needed)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import google.auth.jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from billing.errors import CertificatesUnavailableError, PermissionDenied, Unauthenticated
from billing.http.auth import (
    DEFAULT_CERTS_URL,
    DEFAULT_ISSUERS,
    AuthSettings,
    CertCache,
    Principal,
    authenticate,
    authenticate_headers,
    authorization_header,
)
from devtools.dev_issuer import (
    DEV_ISSUER,
    DEV_PRINCIPAL,
    SIGNATURE_REMOVED,
    CertsServer,
    DevKey,
    generate_key,
    load_or_create_key,
    mint_token,
    serve_certs,
    strip_signature,
)
from tests.conftest import REPO

AUD = "https://europe-west1-proj.cloudfunctions.net/monthly_billing"


@pytest.fixture(scope="module")
def key() -> DevKey:
    return generate_key()


@pytest.fixture(scope="module")
def other_key() -> DevKey:
    return generate_key("attacker")


@pytest.fixture
def server(key: DevKey) -> Iterator[CertsServer]:
    srv, _ = serve_certs(key)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache() -> CertCache:
    return CertCache()


def make_settings(certs_url: str, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "mode": "verify",
        "audience": AUD,
        "allowed_principals": frozenset({DEV_PRINCIPAL}),
        "certs_url": certs_url,
        "issuers": frozenset({DEV_ISSUER}),
    }
    values.update(overrides)
    return AuthSettings(**values)


@pytest.fixture
def settings(server: CertsServer) -> AuthSettings:
    return make_settings(f"{server.base_url}/certs")


def check(token: str, settings: AuthSettings, cache: CertCache) -> Principal:
    return authenticate(f"Bearer {token}", settings, cache=cache)


def rejected(
    token: str, settings: AuthSettings, cache: CertCache, exc: type[Exception] = Unauthenticated
) -> str:
    """Assert rejection; return the message, checked to contain no part of the token."""
    with pytest.raises(exc) as info:
        check(token, settings, cache)
    message = str(info.value)
    for part in token.split("."):
        if len(part) > 8 and part != SIGNATURE_REMOVED:
            assert part not in message
    return message


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- verify mode -------------------------------------------------------------------------------


def test_valid_token_is_accepted(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience=AUD)
    principal = check(token, settings, cache)
    assert principal.email == DEV_PRINCIPAL
    assert principal.issuer == DEV_ISSUER
    assert principal.subject.isdigit()


def test_scheme_is_case_insensitive_and_email_is_lowercased(
    key: DevKey,
    settings: AuthSettings,
    cache: CertCache,
) -> None:
    token = mint_token(key, audience=AUD, email="Scheduler@Dev.LOCAL")
    principal = authenticate(f"bearer  {token} ", settings, cache=cache)
    assert principal.email == DEV_PRINCIPAL


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header: str | None, settings: AuthSettings, cache: CertCache) -> None:
    with pytest.raises(Unauthenticated, match="missing Authorization"):
        authenticate(header, settings, cache=cache)


def test_not_bearer(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience=AUD)
    for header in ["Basic dXNlcjpwYXNz", "Bearer", token, f"Token {token}"]:
        with pytest.raises(Unauthenticated, match="Bearer") as info:
            authenticate(header, settings, cache=cache)
        assert token.split(".")[1] not in str(info.value)


@pytest.mark.parametrize(
    "garbage",
    [
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "!!!.???.***",
        "..",
        b64({"alg": "RS256"}) + ".e30",
        b64({"alg": "RS256"}) + "." + base64.urlsafe_b64encode(b"[1,2]").decode().rstrip("=") + ".x",
        "x" * 20_000,
    ],
)
def test_garbage_is_malformed(garbage: str, settings: AuthSettings, cache: CertCache) -> None:
    with pytest.raises(Unauthenticated, match="well-formed JWT"):
        authenticate(f"Bearer {garbage}", settings, cache=cache)


def test_expired(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience=AUD, now=time.time() - 7200, lifetime=3600)
    assert "expired" in rejected(token, settings, cache)


def test_expiry_tolerates_clock_skew(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience=AUD, now=time.time() - 3610, lifetime=3600)
    assert check(token, settings, cache).email == DEV_PRINCIPAL
    strict = make_settings(settings.certs_url, clock_skew_seconds=0)
    assert "expired" in rejected(token, strict, cache)


def test_issued_in_the_future(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience=AUD, now=time.time() + 600)
    assert "future" in rejected(token, settings, cache)
    slightly = mint_token(key, audience=AUD, now=time.time() + 10)
    assert check(slightly, settings, cache).email == DEV_PRINCIPAL


def test_not_before(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience=AUD, extra_claims={"nbf": int(time.time()) + 600})
    assert "not valid before" in rejected(token, settings, cache)


def test_missing_exp_or_iat(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    for claim in ("exp", "iat"):
        token = mint_token(key, audience=AUD, extra_claims={claim: None})
        assert claim in rejected(token, settings, cache)
    token = mint_token(key, audience=AUD, extra_claims={"exp": "tomorrow"})
    assert "exp" in rejected(token, settings, cache)


def test_wrong_audience(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience="https://elsewhere.example/fn")
    assert "audience" in rejected(token, settings, cache)


def test_audience_list_must_contain_ours(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    ok = mint_token(key, audience=AUD, extra_claims={"aud": ["https://other", AUD]})
    assert check(ok, settings, cache).email == DEV_PRINCIPAL
    bad = mint_token(key, audience=AUD, extra_claims={"aud": ["https://other"]})
    assert "audience" in rejected(bad, settings, cache)


def test_wrong_issuer(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience=AUD, issuer="https://evil.example")
    assert "issuer" in rejected(token, settings, cache)


def test_unknown_kid_refetches_once_then_rejects(
    key: DevKey,
    other_key: DevKey,
    server: CertsServer,
    settings: AuthSettings,
) -> None:
    cache = CertCache(min_refetch_interval=0)
    check(mint_token(key, audience=AUD), settings, cache)
    token = mint_token(other_key, audience=AUD)
    assert "does not publish" in rejected(token, settings, cache)
    assert server.fetches == 2  # the first fetch, then one refetch for the unknown kid


def test_unknown_kid_refetch_is_rate_limited(
    key: DevKey,
    other_key: DevKey,
    server: CertsServer,
    settings: AuthSettings,
    cache: CertCache,
) -> None:
    check(mint_token(key, audience=AUD), settings, cache)
    for _ in range(5):
        rejected(mint_token(other_key, audience=AUD), settings, cache)
    assert server.fetches == 1


def test_key_rotation_is_picked_up(
    key: DevKey,
    other_key: DevKey,
    server: CertsServer,
    settings: AuthSettings,
) -> None:
    cache = CertCache(min_refetch_interval=0)
    check(mint_token(key, audience=AUD), settings, cache)
    server.keys = [key, other_key]
    assert check(mint_token(other_key, audience=AUD), settings, cache).email == DEV_PRINCIPAL
    assert server.fetches == 2


def test_known_kid_but_wrong_key(
    key: DevKey, other_key: DevKey, settings: AuthSettings, cache: CertCache
) -> None:
    claims = json.loads(base64.urlsafe_b64decode(mint_token(key, audience=AUD).split(".")[1] + "=="))
    forged = google.auth.jwt.encode(other_key.signer(), claims, key_id=key.kid).decode()  # type: ignore[no-untyped-call]
    assert "signature does not verify" in rejected(forged, settings, cache)


def test_tampered_payload(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    header, _, signature = mint_token(key, audience=AUD, email="nobody@dev.local").split(".")
    claims = {
        "iss": DEV_ISSUER,
        "aud": AUD,
        "sub": "1",
        "email": DEV_PRINCIPAL,
        "email_verified": True,
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    forged = f"{header}.{b64(claims)}.{signature}"
    assert "signature does not verify" in rejected(forged, settings, cache)


def test_other_algorithms_are_refused(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    _, payload, signature = mint_token(key, audience=AUD).split(".")
    for alg in ("none", "HS256", "ES256", None):
        header = b64({"alg": alg, "kid": key.kid, "typ": "JWT"})
        message = rejected(f"{header}.{payload}.{signature}", settings, cache)
        assert "RS256" in message
    no_kid = b64({"alg": "RS256", "typ": "JWT"})
    assert "kid" in rejected(f"{no_kid}.{payload}.{signature}", settings, cache)


def test_email_not_allowed_is_403(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    token = mint_token(key, audience=AUD, email="intruder@dev.local")
    message = rejected(token, settings, cache, PermissionDenied)
    assert "intruder@dev.local" in message


def test_empty_allow_list_allows_nobody(key: DevKey, server: CertsServer, cache: CertCache) -> None:
    settings = make_settings(f"{server.base_url}/certs", allowed_principals=frozenset())
    rejected(mint_token(key, audience=AUD), settings, cache, PermissionDenied)


def test_email_must_be_present_and_verified(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    unverified = mint_token(key, audience=AUD, extra_claims={"email_verified": False})
    assert "email_verified" in rejected(unverified, settings, cache)
    missing = mint_token(key, audience=AUD, extra_claims={"email_verified": None})
    assert "email_verified" in rejected(missing, settings, cache)
    no_email = mint_token(key, audience=AUD, extra_claims={"email": None})
    assert "no email" in rejected(no_email, settings, cache)
    no_sub = mint_token(key, audience=AUD, extra_claims={"sub": None})
    assert "sub" in rejected(no_sub, settings, cache)
    as_text = mint_token(key, audience=AUD, extra_claims={"email_verified": "true"})
    assert check(as_text, settings, cache).email == DEV_PRINCIPAL


def test_verify_mode_rejects_stripped_signature(
    key: DevKey, settings: AuthSettings, cache: CertCache
) -> None:
    token = strip_signature(mint_token(key, audience=AUD))
    assert "AUTH_MODE=platform" in rejected(token, settings, cache)


def test_certs_are_cached(key: DevKey, server: CertsServer, settings: AuthSettings, cache: CertCache) -> None:
    check(mint_token(key, audience=AUD), settings, cache)
    check(mint_token(key, audience=AUD, email=DEV_PRINCIPAL), settings, cache)
    assert server.fetches == 1


def test_concurrent_requests_fetch_once(
    key: DevKey, server: CertsServer, settings: AuthSettings, cache: CertCache
) -> None:
    token = mint_token(key, audience=AUD)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: check(token, settings, cache), range(32)))
    assert {p.email for p in results} == {DEV_PRINCIPAL}
    assert server.fetches == 1


def test_cache_respects_max_age(key: DevKey, cache: CertCache) -> None:
    now = [1000.0]
    clocked = CertCache(clock=lambda: now[0])
    srv, url = serve_certs(key, max_age=60)
    try:
        settings = make_settings(url)
        token = mint_token(key, audience=AUD)
        check(token, settings, clocked)
        now[0] += 59
        check(token, settings, clocked)
        assert srv.fetches == 1
        now[0] += 2
        check(token, settings, clocked)
        assert srv.fetches == 2
    finally:
        srv.shutdown()
        srv.server_close()


def test_jwks_format(key: DevKey, server: CertsServer, cache: CertCache) -> None:
    settings = make_settings(f"{server.base_url}/jwks")
    assert check(mint_token(key, audience=AUD), settings, cache).email == DEV_PRINCIPAL


def test_certs_unreachable_is_503_and_stale_keys_survive(key: DevKey) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    cache = CertCache(min_refetch_interval=0)
    token = mint_token(key, audience=AUD)
    with pytest.raises(CertificatesUnavailableError) as info:
        check(token, make_settings(f"http://127.0.0.1:{dead_port}/certs"), cache)
    assert info.value.status == 503

    now = [0.0]
    clocked = CertCache(clock=lambda: now[0], min_refetch_interval=0)
    srv, url = serve_certs(key, max_age=60)
    settings = make_settings(url)
    check(token, settings, clocked)
    srv.shutdown()
    srv.server_close()
    now[0] += 3600
    assert check(token, settings, clocked).email == DEV_PRINCIPAL  # served from stale keys
    now[0] += 86_400
    with pytest.raises(CertificatesUnavailableError):
        check(token, settings, clocked)  # but not for more than a day


# --- platform mode -----------------------------------------------------------------------------


@pytest.fixture
def platform() -> AuthSettings:
    # The certs URL is unreachable on purpose: platform mode must never fetch.
    return make_settings("http://127.0.0.1:9/certs", mode="platform")


def test_platform_accepts_stripped_token(key: DevKey, platform: AuthSettings, cache: CertCache) -> None:
    token = strip_signature(mint_token(key, audience=AUD))
    assert token.endswith(f".{SIGNATURE_REMOVED}")
    principal = check(token, platform, cache)
    assert (principal.email, principal.issuer) == (DEV_PRINCIPAL, DEV_ISSUER)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"now": time.time() - 7200}, "expired"),
        ({"audience": "https://elsewhere"}, "audience"),
        ({"issuer": "https://evil.example"}, "issuer"),
        ({"extra_claims": {"email": None}}, "no email"),
        ({"extra_claims": {"email_verified": False}}, "email_verified"),
    ],
)
def test_platform_checks_claims(
    key: DevKey, platform: AuthSettings, cache: CertCache, kwargs: dict[str, Any], fragment: str
) -> None:
    kwargs.setdefault("audience", AUD)
    token = strip_signature(mint_token(key, **kwargs))
    assert fragment in rejected(token, platform, cache)


def test_platform_checks_allow_list(key: DevKey, platform: AuthSettings, cache: CertCache) -> None:
    token = strip_signature(mint_token(key, audience=AUD, email="intruder@dev.local"))
    rejected(token, platform, cache, PermissionDenied)


def test_platform_rejects_a_token_that_still_has_its_signature(
    key: DevKey,
    platform: AuthSettings,
    cache: CertCache,
) -> None:
    assert "Cloud Run IAM" in rejected(mint_token(key, audience=AUD), platform, cache)


def test_platform_prefers_x_serverless_authorization(
    key: DevKey, platform: AuthSettings, cache: CertCache
) -> None:
    verified = strip_signature(mint_token(key, audience=AUD))
    forged = strip_signature(mint_token(key, audience=AUD, email="intruder@dev.local"))
    headers = {"authorization": f"Bearer {verified}", "x-serverless-authorization": f"Bearer {forged}"}
    assert authorization_header(headers, platform) == f"Bearer {forged}"
    with pytest.raises(PermissionDenied):
        authenticate_headers(headers, platform, cache=cache)
    verify = make_settings("http://127.0.0.1:9/certs")
    assert authorization_header(headers, verify) == f"Bearer {verified}"
    assert authorization_header({}, verify) is None
    assert (
        authenticate_headers({"Authorization": f"Bearer {verified}"}, platform, cache=cache).email
        == DEV_PRINCIPAL
    )


# --- settings ----------------------------------------------------------------------------------


def test_from_env_defaults_and_parsing() -> None:
    settings = AuthSettings.from_env(
        {
            "AUTH_AUDIENCE": f" {AUD} ",
            "AUTH_ALLOWED_PRINCIPALS": " Scheduler@Proj.iam.gserviceaccount.com, ,ops@x.com ",
        }
    )
    assert settings.mode == "verify"
    assert settings.audience == AUD
    assert settings.allowed_principals == {"scheduler@proj.iam.gserviceaccount.com", "ops@x.com"}
    assert settings.certs_url == DEFAULT_CERTS_URL
    assert settings.issuers == DEFAULT_ISSUERS == {"https://accounts.google.com", "accounts.google.com"}
    assert settings.clock_skew_seconds == 30
    assert settings.config_errors == ()
    local = AuthSettings.from_env(
        {
            "AUTH_MODE": "PLATFORM",
            "AUTH_AUDIENCE": AUD,
            "AUTH_CERTS_URL": "http://x/certs",
            "AUTH_ISSUERS": f"{DEV_ISSUER},https://accounts.google.com",
            "AUTH_CLOCK_SKEW_SECONDS": "5",
        }
    )
    assert local.mode == "platform"
    assert local.allowed_principals == frozenset()
    assert local.issuers == {DEV_ISSUER, "https://accounts.google.com"}
    assert local.certs_url == "http://x/certs"
    assert local.clock_skew_seconds == 5


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({}, "AUTH_AUDIENCE"),
        ({"AUTH_AUDIENCE": "  "}, "AUTH_AUDIENCE"),
        ({"AUTH_AUDIENCE": AUD, "AUTH_MODE": "off"}, "AUTH_MODE"),
        ({"AUTH_AUDIENCE": AUD, "AUTH_CLOCK_SKEW_SECONDS": "lots"}, "AUTH_CLOCK_SKEW_SECONDS"),
    ],
)
def test_misconfiguration_rejects_every_request(
    key: DevKey,
    server: CertsServer,
    cache: CertCache,
    environ: dict[str, str],
    fragment: str,
) -> None:
    environ = {
        "AUTH_CERTS_URL": f"{server.base_url}/certs",
        "AUTH_ISSUERS": DEV_ISSUER,
        "AUTH_ALLOWED_PRINCIPALS": DEV_PRINCIPAL,
        **environ,
    }
    settings = AuthSettings.from_env(environ)
    token = mint_token(key, audience=settings.audience or AUD)
    assert fragment in rejected(token, settings, cache)
    assert server.fetches == 0


def test_direct_settings_without_audience_reject(key: DevKey, server: CertsServer, cache: CertCache) -> None:
    settings = make_settings(f"{server.base_url}/certs", audience="")
    assert "AUTH_AUDIENCE" in rejected(mint_token(key, audience=""), settings, cache)


# --- dev issuer --------------------------------------------------------------------------------


def test_load_or_create_key_persists(tmp_path: Path) -> None:
    directory = tmp_path / ".dev" / "issuer"
    first = load_or_create_key(directory)
    second = load_or_create_key(directory)
    assert first == second
    path = directory / "dev-issuer.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(first.certificate_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert first.kid == hashlib.sha256(der).hexdigest()[:16]
    assert list(directory.iterdir()) == [path]


def test_mint_token_claims(key: DevKey) -> None:
    token = mint_token(key, audience=AUD, now=1_700_000_000, lifetime=600, extra_claims={"custom": "x"})
    claims = google.auth.jwt.decode(token, certs=key.certs(), verify=False)  # type: ignore[no-untyped-call]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
    assert claims["iss"] == DEV_ISSUER and claims["aud"] == AUD
    assert claims["email"] == DEV_PRINCIPAL and claims["email_verified"] is True
    assert claims["iat"] == 1_700_000_000 and claims["exp"] == 1_700_000_600
    assert claims["azp"] == claims["sub"] and claims["custom"] == "x"
    # google-auth itself accepts the signature against the served certificate.
    fresh = mint_token(key, audience=AUD)
    assert google.auth.jwt.decode(fresh, certs=key.certs(), audience=AUD)["email"] == (DEV_PRINCIPAL)  # type: ignore[no-untyped-call]


def test_dev_issuer_cli(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    directory = tmp_path / "issuer"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.dev_issuer",
            "token",
            "--audience",
            AUD,
            "--dir",
            str(directory),
            "--email",
            "ops@dev.local",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    ).stdout.strip()
    key = load_or_create_key(directory)
    claims = google.auth.jwt.decode(out, certs=key.certs(), audience=AUD)  # type: ignore[no-untyped-call]
    assert claims["email"] == "ops@dev.local"

    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.dev_issuer", "serve", "--port", "0", "--dir", str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = next(word for word in line.split() if word.endswith("/certs"))
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.load(response) == key.certs()
        settings = make_settings(url, allowed_principals=frozenset({"ops@dev.local"}))
        assert check(out, settings, CertCache()).email == "ops@dev.local"
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- issue 8 item 16: finite exp/iat; generic 401/503 answers ------------------------------------


def signed_raw(key: DevKey, payload: str) -> str:
    """A token whose payload is exactly ``payload`` (JSON text), correctly signed by ``key``."""
    header = b64({"alg": "RS256", "kid": key.kid, "typ": "JWT"})
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
    signature = key.signer().sign(f"{header}.{body}".encode())  # type: ignore[no-untyped-call]
    return f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def claims_text(**overrides: str) -> str:
    now = int(time.time())
    values = {
        "iss": json.dumps(DEV_ISSUER),
        "aud": json.dumps(AUD),
        "sub": '"1"',
        "email": json.dumps(DEV_PRINCIPAL),
        "email_verified": "true",
        "iat": str(now),
        "exp": str(now + 3600),
        **overrides,
    }
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"


def test_signed_raw_builds_a_valid_token(key: DevKey, settings: AuthSettings, cache: CertCache) -> None:
    assert check(signed_raw(key, claims_text()), settings, cache).email == DEV_PRINCIPAL


@pytest.mark.parametrize("claim", ["exp", "iat"])
@pytest.mark.parametrize(
    "value", ["NaN", "Infinity", "-Infinity", "1e400", "1e300", "true", str(10**30), "-1"]
)
def test_exp_and_iat_must_be_finite_plausible_numbers(
    key: DevKey, settings: AuthSettings, cache: CertCache, claim: str, value: str
) -> None:
    token = signed_raw(key, claims_text(**{claim: value}))
    assert claim in rejected(token, settings, cache)


def test_platform_mode_checks_exp_too(key: DevKey, platform: AuthSettings, cache: CertCache) -> None:
    token = strip_signature(signed_raw(key, claims_text(exp="Infinity")))
    assert "exp" in rejected(token, platform, cache)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def http_log() -> Iterator[_Records]:
    from billing.http.shell import log

    records = _Records()
    log.addHandler(records)
    yield records
    log.removeHandler(records)


def serve(headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One POST through ``billing.http.shell.handle`` (whose ``run`` must not be reached)."""
    import flask

    from billing.http.shell import handle

    def unreachable(_call: Any) -> dict[str, Any]:
        raise AssertionError("run() reached without valid credentials")

    app = flask.Flask(__name__)
    with app.test_request_context("/", method="POST", data=b"{}", headers=headers):
        response = handle(flask.request, function="monthly_billing", fields={}, run=unreachable)
    return response.status_code, json.loads(response.get_data()), dict(response.headers)


@pytest.mark.parametrize(
    "case", ["missing", "expired", "audience", "issuer", "signer", "garbage", "misconfigured"]
)
def test_http_401_is_generic_and_details_go_to_the_log(
    key: DevKey,
    other_key: DevKey,
    server: CertsServer,
    http_log: _Records,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    monkeypatch.setenv("AUTH_AUDIENCE", AUD)
    monkeypatch.setenv("AUTH_CERTS_URL", f"{server.base_url}/certs")
    monkeypatch.setenv("AUTH_ISSUERS", DEV_ISSUER)
    monkeypatch.setenv("AUTH_ALLOWED_PRINCIPALS", DEV_PRINCIPAL)
    token = {
        "missing": None,
        "garbage": "not.a.jwt",
        "expired": mint_token(key, audience=AUD, now=time.time() - 7200),
        "audience": mint_token(key, audience="https://elsewhere.example"),
        "issuer": mint_token(key, audience=AUD, issuer="https://evil.example"),
        "signer": mint_token(other_key, audience=AUD),
        "misconfigured": mint_token(key, audience=AUD),
    }[case]
    if case == "misconfigured":
        monkeypatch.setenv("AUTH_MODE", "sideways")
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    status, body, response_headers = serve(headers)
    assert status == 401
    assert body["error"] == {"code": "unauthenticated", "message": "invalid or missing credentials"}
    assert response_headers.get("WWW-Authenticate", "").startswith("Bearer")
    (record,) = [r for r in http_log.records if getattr(r, "status", None) == 401]
    detail = str(getattr(record, "error", ""))
    assert detail and detail != "invalid or missing credentials"
    if token is not None and case != "garbage":
        assert token.split(".")[1] not in detail


def test_http_503_is_generic_and_details_go_to_the_log(
    key: DevKey, http_log: _Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/secret-certs-path"
    monkeypatch.setenv("AUTH_AUDIENCE", AUD)
    monkeypatch.setenv("AUTH_CERTS_URL", dead)
    monkeypatch.setenv("AUTH_ISSUERS", DEV_ISSUER)
    monkeypatch.setenv("AUTH_ALLOWED_PRINCIPALS", DEV_PRINCIPAL)
    status, body, headers = serve({"Authorization": f"Bearer {mint_token(key, audience=AUD)}"})
    assert status == 503
    assert body["error"] == {"code": "auth_unavailable", "message": "authentication temporarily unavailable"}
    assert "secret-certs-path" not in json.dumps(body)
    assert headers.get("Retry-After")
    logged = " ".join(str(getattr(r, "error", "")) for r in http_log.records)
    assert "secret-certs-path" in logged
