"""``make serve``: every function on loopback, with the emulators and the local OIDC issuer.

Loads the shipped Online Retail sample (tenant ``uk-retail``, November 2011) unless ``--empty``,
starts each function in ``functions/`` with ``functions-framework`` on its own port, prints the
URLs and ready-to-run admin commands, and keeps running until Ctrl-C (or SIGTERM), then stops
everything by PID.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from google.cloud import firestore

from devtools import online_retail
from devtools.demo import SAMPLE
from devtools.local import FUNCTIONS, REPO, LocalStack


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m devtools.serve")
    parser.add_argument("--empty", action="store_true", help="do not load the sample data")
    parser.add_argument("--base-port", type=int, default=8081)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with LocalStack() as stack:
        if not args.empty:
            loaded = online_retail.load(firestore.Client(project=stack.project), SAMPLE,
                                        "2011-11", tenant_id="uk-retail")
            print(f"loaded {loaded.events_written} events of {loaded.customers} customers "
                  "(tenant uk-retail, 2011-11)")
        for offset, name in enumerate(FUNCTIONS):
            if (REPO / "functions" / name / "main.py").exists():
                url = stack.start_function(name, args.base_port + offset)
                print(f"{name:<18} {url}")
        print("\nenvironment of the functions:")
        for key, value in sorted(stack.env.items()):
            print(f"  {key}={value}")
        first = stack.functions.get("monthly_billing")
        if first:
            print("\ntry:\n  .venv/bin/python -m admin call monthly_billing --local "
                  f"--url {first[1]} --tenant uk-retail --month 2011-11 --dry-run")
        generate = stack.functions.get("generate_invoices")
        if generate:
            print("  .venv/bin/python -m admin call generate_invoices --local "
                  f"--url {generate[1]} --as-of 2026-11-01T00:00:00Z")
        print("\nCtrl-C stops everything.")
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
