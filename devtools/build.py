"""Package every Cloud Function as a deterministic zip: ``python -m devtools.build``.

For each ``functions/<name>/main.py`` this writes ``build/<name>.zip`` holding, at its root:

- the files of ``functions/<name>/`` (``main.py`` and any helper module next to it);
- the ``billing/`` package;
- ``requirements.txt``: the function's own if it has one, else the repository's (the pinned
  runtime dependencies of every function).

Caches, tests and hidden files are left out. The zip is deterministic: entries sorted by name,
one fixed timestamp and mode, fixed compression, so its SHA-256 changes only when the packaged
code does. Terraform names the uploaded object by that hash, so only changed functions redeploy.

Command line::

    python -m devtools.build [--out DIR] [NAME ...]

prints one ``<sha256>  <path>`` line per zip. Exit status 1 when a named function does not exist
or there is none to build.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Timestamp of every entry (the earliest a zip can record), so builds are byte-identical.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
#: Unix mode of every entry: a regular file, rw-r--r--.
FILE_MODE = 0o100644
#: Directories never packaged, at any depth.
EXCLUDED_DIRS = frozenset({"__pycache__", "tests", "test", ".pytest_cache", ".mypy_cache"})
#: File suffixes never packaged.
EXCLUDED_SUFFIXES = frozenset({".pyc", ".pyo"})


class BuildError(RuntimeError):
    """A function cannot be packaged (missing directory or ``main.py``)."""


@dataclass(frozen=True)
class BuiltZip:
    """One function's zip.

    Attributes:
        name: the function name (its directory under ``functions/`` and its entry point).
        path: where the zip was written.
        sha256: hex SHA-256 of the zip's bytes.

    """

    name: str
    path: Path
    sha256: str


def function_names(repo: Path = REPO) -> list[str]:
    """Return the sorted names of the directories under ``functions/`` that hold a ``main.py``."""
    root = repo / "functions"
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/main.py") if p.is_file())


def _is_packaged(relative: Path) -> bool:
    """Tell whether a file, given relative to the directory being packaged, belongs in a zip."""
    parts = relative.parts
    if any(part.startswith(".") for part in parts):
        return False
    if any(part in EXCLUDED_DIRS for part in parts[:-1]):
        return False
    filename = parts[-1]
    if relative.suffix in EXCLUDED_SUFFIXES:
        return False
    return not (
        filename == "conftest.py"
        or (filename.startswith("test_") and filename.endswith(".py"))
        or filename.endswith("_test.py")
    )


def _tree(directory: Path, prefix: str) -> dict[str, Path]:
    """Map zip entry names (``prefix`` + relative POSIX path) to the packaged files of a tree."""
    entries: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS and not d.startswith("."))
        for filename in filenames:
            path = Path(dirpath) / filename
            relative = path.relative_to(directory)
            if path.is_file() and _is_packaged(relative):
                entries[prefix + relative.as_posix()] = path
    return entries


def collect_files(name: str, repo: Path = REPO) -> dict[str, Path]:
    """Return the zip's entries for function ``name``: entry name -> file on disk.

    Raises:
        BuildError: ``functions/<name>/main.py`` does not exist.

    """
    function_dir = repo / "functions" / name
    if not (function_dir / "main.py").is_file():
        raise BuildError(f"functions/{name}/main.py does not exist")
    entries = _tree(repo / "billing", "billing/")
    entries.update(_tree(function_dir, ""))
    if "requirements.txt" not in entries:
        entries["requirements.txt"] = repo / "requirements.txt"
    return entries


def write_zip(entries: dict[str, Path], destination: Path) -> str:
    """Write ``entries`` to ``destination`` deterministically and return the zip's hex SHA-256.

    The zip is written next to its destination and renamed into place, so a reader never sees a
    half-written file.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for entry_name in sorted(entries):
            info = zipfile.ZipInfo(entry_name, date_time=FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so external_attr carries the mode everywhere
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, entries[entry_name].read_bytes(), compresslevel=9)
    partial.replace(destination)
    return hashlib.sha256(destination.read_bytes()).hexdigest()


def build(
    repo: Path = REPO, out_dir: Path | None = None, names: Iterable[str] | None = None
) -> list[BuiltZip]:
    """Build one zip per function into ``out_dir`` (default ``<repo>/build``).

    Args:
        repo: the repository root.
        out_dir: where the zips go, as ``<name>.zip``.
        names: the functions to build; default every ``functions/*/main.py``.

    Raises:
        BuildError: a named function does not exist, or there is no function at all.

    """
    selected = sorted(names) if names is not None else function_names(repo)
    if not selected:
        raise BuildError("no functions/<name>/main.py to build")
    target = out_dir if out_dir is not None else repo / "build"
    built = []
    for name in selected:
        path = target / f"{name}.zip"
        digest = write_zip(collect_files(name, repo), path)
        built.append(BuiltZip(name=name, path=path, sha256=digest))
    return built


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: build the zips and print ``<sha256>  <path>`` for each."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.build", description="Package every Cloud Function as a zip."
    )
    parser.add_argument("names", nargs="*", help="functions to build (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/)")
    args = parser.parse_args(argv)
    try:
        built = build(out_dir=args.out, names=args.names or None)
    except BuildError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 1
    for item in built:
        print(f"{item.sha256}  {item.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
