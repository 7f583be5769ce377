"""IAP assertion verification (billing.http.auth.iap): ES256, JWK set, audience, issuer, email."""

from __future__ import annotations

import base64
import json
import time

import pytest

from billing.errors import CertificatesUnavailableError, Unauthenticated
from billing.http.auth.iap import IapKeys, IapSettings, ec_jwk_to_pem, verify_assertion
from devtools.dev_issuer import generate_key, mint_token
from devtools.iap_proxy import IapKey

KEY = IapKey.generate()
AUDIENCE = "/projects/1/locations/europe-west2/services/billing-console"
SETTINGS = IapSettings(audience=AUDIENCE, certs_url="https://iap.test/jwk")


def keys(*served: IapKey) -> IapKeys:
    return IapKeys(fetch=lambda url: {"keys": [k for s in served for k in s.jwks()["keys"]]})


def test_a_valid_assertion_gives_the_lowercased_email() -> None:
    principal = verify_assertion(KEY.assertion("Finance@Acme.test", AUDIENCE), SETTINGS, keys(KEY))
    assert principal.email == "finance@acme.test" and principal.issuer == "https://cloud.google.com/iap"


@pytest.mark.parametrize(
    "assertion",
    [
        None,
        "",
        "garbage",
        "a.b.c",
        KEY.assertion("a@b.co", "/wrong/audience"),
        KEY.assertion("a@b.co", AUDIENCE, issuer="https://accounts.google.com"),
        KEY.assertion("a@b.co", AUDIENCE, now=time.time() - 7200),  # expired
        KEY.assertion("a@b.co", AUDIENCE, now=time.time() + 7200),  # issued in the future
        IapKey.generate().assertion("a@b.co", AUDIENCE),  # a signer not in the key set
        KEY.assertion("not-an-email", AUDIENCE),
    ],
)
def test_bad_assertions_are_401(assertion: str | None) -> None:
    with pytest.raises(Unauthenticated):
        verify_assertion(assertion, SETTINGS, keys(KEY))


def test_an_rs256_token_is_refused_even_from_a_known_kid() -> None:
    rsa = generate_key()
    token = mint_token(rsa, audience=AUDIENCE, issuer="https://cloud.google.com/iap")
    with pytest.raises(Unauthenticated):
        verify_assertion(token, SETTINGS, keys(KEY))


def test_a_tampered_payload_is_refused() -> None:
    header, payload, signature = KEY.assertion("a@b.co", AUDIENCE).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["email"] = "ceo@b.co"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated):
        verify_assertion(f"{header}.{forged}.{signature}", SETTINGS, keys(KEY))


def test_without_an_audience_everyone_is_refused() -> None:
    with pytest.raises(Unauthenticated):
        verify_assertion(KEY.assertion("a@b.co", ""), IapSettings(audience=""), keys(KEY))


def test_a_rotated_key_is_fetched_and_an_outage_keeps_the_cached_keys() -> None:
    rotated = IapKey.generate()
    served = [KEY]
    calls: list[str] = []
    clock = [0.0]

    def fetch(url: str) -> object:
        calls.append(url)
        if not served:
            raise CertificatesUnavailableError("down")
        return {"keys": [k for s in served for k in s.jwks()["keys"]]}

    cache = IapKeys(fetch=fetch, clock=lambda: clock[0])
    verify_assertion(KEY.assertion("a@b.co", AUDIENCE), SETTINGS, cache)
    served.append(rotated)
    clock[0] = 60.0  # an unknown kid refetches, at most every 30 s
    verify_assertion(rotated.assertion("a@b.co", AUDIENCE), SETTINGS, cache)
    served.clear()
    clock[0] = 5000.0  # stale and the fetch fails: the cached keys still verify
    verify_assertion(KEY.assertion("a@b.co", AUDIENCE), SETTINGS, cache)
    assert len(calls) == 3
    with pytest.raises(CertificatesUnavailableError):
        verify_assertion(KEY.assertion("a@b.co", AUDIENCE), SETTINGS, IapKeys(fetch=fetch))


def test_only_p256_signing_keys_are_read() -> None:
    jwk = KEY.jwks()["keys"][0]
    assert ec_jwk_to_pem(jwk) is not None
    assert ec_jwk_to_pem({**jwk, "crv": "P-384"}) is None
    assert ec_jwk_to_pem({**jwk, "kty": "RSA"}) is None
    assert ec_jwk_to_pem({**jwk, "x": "!!"}) is None
