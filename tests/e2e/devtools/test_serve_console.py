"""``make serve``'s console (devtools.serve.start_console): behind the dev IAP proxy, keys over HTTP."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests
from google.cloud import firestore

from devtools.dev_issuer import load_or_create_key
from devtools.serve import start_console
from tests import factories as f


def test_the_console_opens_through_the_dev_iap_proxy(db: firestore.Client, tmp_path: Path) -> None:
    f.tenant(db, "acme")
    stack: Any = SimpleNamespace(
        dev_dir=tmp_path,
        key=load_or_create_key(tmp_path / "issuer"),
        env={"AUTH_ALLOWED_PRINCIPALS": "scheduler@dev.local,admin@dev.local"},
        functions={},
    )
    servers, url = start_console(stack, "admin@dev.local")
    try:
        page = requests.get(f"{url}runs?tenant=acme", timeout=30)
        assert page.status_code == 200, page.text
        assert "Runs · Acme Analytics Ltd" in page.text and "admin@dev.local · platform" in page.text
        # The console itself refuses a request that did not come through the proxy.
        upstream = servers[1]
        direct = requests.get(f"http://127.0.0.1:{upstream.server_port}/runs", timeout=30)
        assert direct.status_code == 401
        assert (tmp_path / "iap" / "iap-key.pem").stat().st_mode & 0o777 == 0o600
    finally:
        for server in servers:
            server.shutdown()
