"""``python -m admin usage CUSTOMER``: posts to current_usage with the tenant and a token, prints it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admin.usage import render
from devtools.dev_issuer import DEV_PRINCIPAL, CertsServer, DevKey
from tests.unit.admin.test_admin_cli import Function, function, issuer, run

__all__ = ["function", "issuer"]  # the fixtures, shared with the call tests


def test_usage_posts_the_customer_with_the_tenant_and_a_token(
    function: Function, issuer: tuple[DevKey, Path, CertsServer]
) -> None:
    _, directory, _ = issuer
    argv = ["usage", "c1", "--tenant", "acme", "--subscription-id", "s1", "--url", function.url]
    code, out, err = run([*argv, "--local", "--issuer-dir", str(directory), "--json"])
    assert (code, err) == (0, "")
    answer = json.loads(out)
    assert answer["principal"] == DEV_PRINCIPAL
    assert answer["body"] == {"customer_id": "c1", "subscription_id": "s1"}
    assert answer["tenant"] == "acme" and answer["method"] == "POST"
    [request] = function.requests
    assert request["headers"]["Authorization"].split()[1] not in out


def test_usage_url_from_the_environment_and_tenant_required(
    function: Function, issuer: tuple[DevKey, Path, CertsServer]
) -> None:
    _, directory, _ = issuer
    environ = {"ADMIN_URL_CURRENT_USAGE": function.url, "ADMIN_TOKEN_SOURCE": "local"}
    code, out, _ = run(["usage", "c9", "--tenant", "t", "--issuer-dir", str(directory), "--json"], environ)
    assert code == 0 and json.loads(out)["body"] == {"customer_id": "c9"}
    with pytest.raises(SystemExit) as exc:
        run(["usage", "c9", "--url", function.url])  # no --tenant
    assert exc.value.code == 2


def test_usage_refuses_plain_http_off_loopback() -> None:
    with pytest.raises(SystemExit) as exc:
        run(["usage", "c1", "--tenant", "t", "--url", "http://billing.example.com/", "--local"])
    assert exc.value.code == 2


def test_render_prints_each_charge_and_the_totals() -> None:
    text = render(
        {
            "customer_id": "c1",
            "subscription_id": "s1",
            "from_datetime": "2026-10-01T00:00:00+00:00",
            "to_datetime": "2026-11-01T00:00:00+00:00",
            "as_of": "2026-10-20T12:00:00+00:00",
            "currency": "GBP",
            "amount": 1234,
            "tax": 247,
            "total": 1481,
            "charges": [{"meter": "api_calls", "units": "1000", "events_count": 1000, "amount": 1234}],
        }
    )
    assert "api_calls" in text and "1000" in text and "1234" in text
    assert "total 1481" in text and "GBP" in text
