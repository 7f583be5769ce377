"""The function zips of ``python -m devtools.build``: layout, determinism, and that each serves.

Each zip is unzipped to its own folder and, in a subprocess whose import path is that folder (plus
the virtualenv's installed third-party packages: nothing is installed, nothing is fetched), loaded
with ``functions_framework.create_app`` and asked ``GET /`` through Flask's test client. A GET
without a token answers 200 (health) or 401, as JSON; anything else, or an import of the
repository's own code instead of the zip's, fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from devtools.build import FIXED_DATE_TIME, BuiltZip, build, function_names
from tests.conftest import REPO

FUNCTIONS = function_names(REPO)

PROBE = r"""
import json, sys
import functions_framework

name, source = sys.argv[1], sys.argv[2]
app = functions_framework.create_app(target=name, source=source)
response = app.test_client().get("/")
import billing
print(json.dumps({
    "status": response.status_code,
    "content_type": response.headers.get("Content-Type", ""),
    "json": response.get_json(silent=True),
    "billing": billing.__file__,
    "path": sys.path,
}))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltZip]:
    out = tmp_path_factory.mktemp("build")
    return {item.name: item for item in build(REPO, out)}


def test_there_is_at_least_one_function() -> None:
    assert FUNCTIONS, "no functions/<name>/main.py to package"


def snapshot(destination: Path) -> Path:
    """Copy what the build reads, so concurrent edits of the work tree cannot change it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("functions", "billing"):
        shutil.copytree(REPO / folder, destination / folder, ignore=ignore)
    shutil.copy2(REPO / "requirements.txt", destination / "requirements.txt")
    return destination


def test_build_is_deterministic(tmp_path: Path) -> None:
    first_repo = snapshot(tmp_path / "a" / "repo")
    first = build(first_repo, tmp_path / "a" / "out")
    # Same sources elsewhere, with other timestamps: the zips must be byte-identical.
    second_repo = tmp_path / "b" / "elsewhere"
    shutil.copytree(first_repo, second_repo)
    for path in second_repo.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = build(second_repo, tmp_path / "b" / "out")
    assert [z.name for z in first] == [z.name for z in second] == FUNCTIONS
    for a, b in zip(first, second, strict=True):
        assert a.sha256 == b.sha256, f"{a.name}: two builds of the same sources differ"
        assert a.path.read_bytes() == b.path.read_bytes()
        assert hashlib.sha256(a.path.read_bytes()).hexdigest() == a.sha256
    # And a code change changes the hash.
    main = second_repo / "functions" / FUNCTIONS[0] / "main.py"
    main.write_text(main.read_text() + "\n# changed\n")
    (changed,) = build(second_repo, tmp_path / "c", names=[FUNCTIONS[0]])
    assert changed.sha256 != first[0].sha256


@pytest.mark.parametrize("name", FUNCTIONS)
def test_zip_layout(built: dict[str, BuiltZip], name: str) -> None:
    with zipfile.ZipFile(built[name].path) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert archive.testzip() is None
        requirements = archive.read("requirements.txt").decode()
    assert names == sorted(names), "entries must be sorted"
    assert "main.py" in names and "requirements.txt" in names
    assert "billing/__init__.py" in names
    assert all(info.date_time == FIXED_DATE_TIME for info in infos)
    for entry in names:
        parts = entry.split("/")
        assert "__pycache__" not in parts and not entry.endswith(".pyc"), entry
        assert "tests" not in parts and not parts[-1].startswith("test_"), entry
        assert not any(part.startswith(".") for part in parts), entry
    assert "functions-framework==" in requirements
    shared_sources = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "billing").rglob("*.py")
        if "__pycache__" not in p.parts and "tests" not in p.parts and not p.name.startswith("test_")
    }
    assert shared_sources <= set(names), f"missing {sorted(shared_sources - set(names))}"


def probe_env(home: Path, source_dir: Path) -> dict[str, str]:
    """A minimal environment: the unzipped folder on the path, fake but well-formed config."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(source_dir),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Never reach Google: emulator hosts make the clients anonymous and local (nothing
        # listens there; GET must not need them), and no metadata-server probing.
        "NO_GCE_CHECK": "True",
        "GOOGLE_CLOUD_PROJECT": "build-probe",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        "INVOICES_BUCKET": "build-probe-invoices",
        "AUTH_MODE": "platform",
        "AUTH_AUDIENCE": "https://probe-123.europe-west2.run.app",
        "AUTH_ALLOWED_PRINCIPALS": "billing-scheduler@build-probe.iam.gserviceaccount.com",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "9",
        "SMTP_USERNAME": "probe",
        "SMTP_PASSWORD": "probe",
        "SMTP_STARTTLS": "false",
        "SMTP_FROM": "probe@example.com",
        "STRIPE_API_KEY": "sk_test_probe",
        "STRIPE_WEBHOOK_SECRET": "whsec_probe",
        "STRIPE_API_BASE": "http://127.0.0.1:9",
    }


@pytest.mark.parametrize("name", FUNCTIONS)
def test_zip_serves_a_request_from_the_unzipped_folder_alone(
    built: dict[str, BuiltZip], name: str, tmp_path: Path
) -> None:
    source_dir = tmp_path / "src"
    with zipfile.ZipFile(built[name].path) as archive:
        archive.extractall(source_dir)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, name, str(source_dir / "main.py")],
        cwd=source_dir,
        env=probe_env(tmp_path, source_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] in (200, 401), report
    assert report["content_type"].startswith("application/json"), report
    assert isinstance(report["json"], dict), report
    if report["status"] == 401:
        assert "error" in report["json"], report
    # The code came from the zip, not from the repository.
    assert Path(report["billing"]).resolve().is_relative_to(source_dir.resolve()), report
    repo = str(REPO.resolve())
    assert not any(entry and str(Path(entry).resolve()) == repo for entry in report["path"])
