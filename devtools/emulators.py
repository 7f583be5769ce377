"""Start and stop the local Firestore and Cloud Storage emulators on free loopback ports.

The Firestore emulator is Google's real one (``gcloud emulators firestore start``, Java); Cloud
Storage is ``gcp-storage-emulator``. Both are started in their own process group, waited for by
polling their port (never a fixed sleep), and stopped by PID. Used by the test suite (in-process)
and by ``make demo``/``make serve`` through the command line::

    python -m devtools.emulators start --state .dev/emulators.json   # prints shell exports
    python -m devtools.emulators stop --state .dev/emulators.json

Errors: ``EmulatorError`` when a process exits early or its port does not open in time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class EmulatorError(RuntimeError):
    """An emulator did not start (exited, or its port never opened)."""


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Poll ``127.0.0.1:port`` every 50 ms until it accepts a connection.

    Raises:
        EmulatorError: the process exited, or ``timeout`` seconds passed.

    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmulatorError(f"process {process.pid} exited with {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise EmulatorError(f"port {port} did not open within {timeout:.0f}s")


@dataclass
class Emulator:
    """One running emulator: its PID (process group leader), port and log file."""

    name: str
    pid: int
    port: int
    log: str

    @property
    def host(self) -> str:
        """``host:port`` as the ``*_EMULATOR_HOST`` variables want it."""
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        """Terminate the process group by PID; SIGKILL after 5 s. Idempotent."""
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                # Reap the leader when it is our child, or its zombie keeps the group alive.
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _spawn(name: str, argv: list[str], port: int, log_dir: Path, timeout: float) -> Emulator:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    emulator = Emulator(name=name, pid=process.pid, port=port, log=str(log_path))
    try:
        wait_for_port(port, process, timeout)
    except EmulatorError as exc:
        emulator.stop()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise EmulatorError(f"{name} emulator failed: {exc}\n{tail}") from None
    return emulator


def start_firestore(log_dir: Path, timeout: float = 60.0) -> Emulator:
    """Start Google's Firestore emulator on a free loopback port and wait until it answers."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorError(
            "gcloud not found: install the Google Cloud SDK with the cloud-firestore-emulator component"
        )
    port = free_port()
    emulator = _spawn(
        "firestore",
        [gcloud, "emulators", "firestore", "start", f"--host-port={LOOPBACK}:{port}"],
        port,
        log_dir,
        timeout,
    )
    # The port opens slightly before the HTTP layer answers; poll the root until it does.
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{emulator.host}/", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                emulator.stop()
                raise EmulatorError("firestore emulator never answered HTTP") from None
            time.sleep(0.05)
    return emulator


def start_storage(log_dir: Path, default_bucket: str | None, timeout: float = 30.0) -> Emulator:
    """Start ``gcp-storage-emulator`` (in memory) on a free loopback port, optionally with a bucket."""
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    argv = [str(exe), "start", "--host", LOOPBACK, "--in-memory", "--quiet"]
    port = free_port()
    argv += ["--port", str(port)]
    if default_bucket:
        argv += ["--default-bucket", default_bucket]
    return _spawn("storage", argv, port, log_dir, timeout)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.emulators")
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--state", default=".dev/emulators.json")
    parser.add_argument("--bucket", default=os.environ.get("INVOICES_BUCKET", "local-invoices"))
    args = parser.parse_args(argv)
    state = Path(args.state)
    if args.command == "stop":
        if not state.exists():
            return 0
        for item in json.loads(state.read_text()):
            Emulator(**item).stop()
        state.unlink()
        return 0
    log_dir = state.parent / "logs"
    firestore = start_firestore(log_dir)
    try:
        storage = start_storage(log_dir, args.bucket)
    except EmulatorError:
        firestore.stop()
        raise
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps([vars(firestore), vars(storage)]))
    print(f"export FIRESTORE_EMULATOR_HOST={firestore.host}")
    print(f"export STORAGE_EMULATOR_HOST=http://{storage.host}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
