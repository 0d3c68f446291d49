"""A bounded load test of didmarkd on loopback, small enough for the default suite: 8 clients
x 50 Verify calls, then clients that cancel mid-call (Verify and Embed), then SIGTERM during
load. bench/server_load.py runs it; the full size (64 clients x 2000 calls) is recorded in
docs/perf/server.md."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc", reason="grpcio is not installed (scripts/setup.sh installs it)")
pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (scripts/setup.sh installs it)")

SOURCE = Path(os.environ.get("DIDMARK_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def test_load_cancellation_and_sigterm_hold(cli, tmp_path):
    didmarkd = os.environ.get("DIDMARKD") or str(Path(cli).parent / "didmarkd")
    if not Path(didmarkd).exists():
        pytest.skip("didmarkd is not built (configure with -DDIDMARK_SERVER=ON)")
    out = tmp_path / "load.json"
    p = subprocess.run([sys.executable, str(SOURCE / "bench" / "server_load.py"), "--didmarkd", didmarkd,
                        "--didmark", cli, "--clients", "8", "--calls", "50", "--cancel-calls", "20", "--procs", "2",
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert out.exists(), p.stderr
    r = json.loads(out.read_text())
    steady, cancel, term = r["steady"], r["cancel"], r["sigterm"]
    # Every call of the steady phase answered OK, each logged once.
    assert steady["calls"] == 400 and steady["ok"] == 400 and steady["unexpected"] == 0, steady
    assert steady["log_lines"] == 400 and steady["server_exit"] == 0
    assert steady["p50_ms"] > 0 and steady["p99_ms"] >= steady["p50_ms"]
    # Cancelled and late calls: only OK / CANCELLED / DEADLINE_EXCEEDED, no partial output.
    assert cancel["unexpected"] == 0 and not cancel["output_problems"], cancel
    assert cancel["status"].get("Verify CANCELLED", 0) > 0, "the cancel phase cancelled nothing"
    # SIGTERM under load: OK or UNAVAILABLE only, every OK embed complete, clean exit.
    assert term["unexpected"] == 0 and not term["output_problems"], term
    assert term["server_exit"] == 0 and term["stopped_logged"], term
    assert term["status"].get("Verify UNAVAILABLE", 0) + term["status"].get("Embed UNAVAILABLE", 0) > 0
    assert r["failures"] == [] and p.returncode == 0, p.stdout + p.stderr
