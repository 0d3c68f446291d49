#!/usr/bin/env python3
"""didmarkd under load on loopback: many concurrent gRPC clients, then clients that cancel
mid-call, then SIGTERM in the middle of the load. The figures in docs/perf/server.md come from
this script.

  python3 bench/server_load.py --didmarkd build/bin/didmarkd --didmark build/bin/didmark \\
      [--clients 64] [--calls 2000] [--procs 2] [--json out.json]

Phases (each against a fresh server with bearer tokens and one JSON log line per call):
  steady  CLIENTS clients (one channel each) x CALLS Verify calls on a small marked checkpoint:
          calls/s, latency p50/p99/max, server CPU per call; every call must be OK.
  cancel  the same clients; each Verify is cancelled after a random delay around the median
          latency, and each client also runs Embeds into fresh outputs with deadlines of a few
          ms: answers must be OK, CANCELLED or DEADLINE_EXCEEDED, every Embed answered OK must
          have its output, every output present must be a complete file, and no temporary may
          be left under the root.
  sigterm the same clients call Verify and Embed without pause; SIGTERM after a second: answers
          must be OK or UNAVAILABLE, every Embed answered OK has its output, the server exits 0
          after logging "stopped".
Exit status 0 when every phase met its bar, 1 otherwise ("unexpected" counts in the JSON).

Needs grpcio and grpcio-tools (the client is generated from proto/didmark.proto into a temp
folder). Clients run in PROCS processes of asyncio tasks (grpc.aio).
"""
import argparse
import asyncio
import collections
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]
TOKEN = "load-test-token-0123456789abcdef"


def generate_stubs(out):
    from grpc_tools import protoc

    proto = SOURCE / "proto"
    rc = protoc.main(["protoc", f"-I{proto}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(proto / "didmark.proto")])
    if rc != 0:
        sys.exit("grpc_tools.protoc failed on proto/didmark.proto")


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stderr}")
    return p.stdout


# ---- the server ----------------------------------------------------------------------------


class Server:
    def __init__(self, exe, work, name, jobs, max_queue):
        self.log_path = work / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [exe, "--listen", "127.0.0.1:0", "--root", work / "root", "--token-file", work / "tokens.jsonl",
             "--jobs", str(jobs), "--max-queue", str(max_queue), "--drain-seconds", "30"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = None
        deadline = time.time() + 60
        while self.port is None and time.time() < deadline:
            for e in self.events():
                if e.get("event") == "listening":
                    self.port = e["port"]
            if self.proc.poll() is not None:
                sys.exit(f"didmarkd exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        if self.port is None:
            sys.exit("didmarkd did not start")

    def events(self):
        return [json.loads(l) for l in self.log_path.read_text(errors="replace").splitlines() if l.startswith("{")]

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=120)
        self.log.close()
        return rc


# ---- clients (run in worker processes) -------------------------------------------------------


async def client_loop(stub, pb2, grpc, task, rng, out):
    md = (("authorization", "Bearer " + TOKEN),)
    verify = pb2.VerifyRequest(path=task["file"], owner=pb2.Owner(did=task["did"], key_hex=task["key"]))
    mode = task["mode"]
    stop_at = task.get("stop_at")
    i = 0
    while (i < task["calls"]) if mode != "sigterm" else (time.time() < stop_at):
        i += 1
        embed = mode != "steady" and i % task["embed_every"] == 0
        t0 = time.perf_counter()
        if embed:
            output = f"out/c{task['client']}_{i}.safetensors"
            timeout = rng.uniform(0.002, 0.2) if mode == "cancel" else 60
            call = stub.Embed(pb2.EmbedRequest(input=task["plain"], output=output, owner=verify.owner,
                                               options=pb2.MarkOptions(strength=0.02, max_change=0.05), allow_weak=True),
                              metadata=md, timeout=timeout)
        else:
            call = stub.Verify(verify, metadata=md, timeout=60)
        code = "OK"
        try:
            if mode == "cancel" and not embed:
                try:
                    await asyncio.wait_for(asyncio.shield(call), timeout=rng.uniform(0, 2 * task["p50"]))
                except asyncio.TimeoutError:
                    call.cancel()
                    await call
            else:
                await call
        except asyncio.CancelledError:
            code = "CANCELLED"
        except grpc.RpcError as e:
            code = e.code().name
            if code not in ("CANCELLED", "DEADLINE_EXCEEDED", "UNAVAILABLE"):
                out["examples"].append(f"{code}: {e.details()}")
        dt = time.perf_counter() - t0
        out["status"][("Embed " if embed else "Verify ") + code] += 1
        if code == "OK" and not embed:
            out["latency"].append(dt)
        if embed:
            out["embeds"].append([output, code])
        if code == "UNAVAILABLE" and mode == "sigterm":
            break  # the server is going away: this client stops, as a real one would fail over


async def worker_main(spec):
    sys.path.insert(0, spec["stubs"])
    import grpc
    import didmark_pb2 as pb2
    import didmark_pb2_grpc as pb2_grpc

    out = {"status": collections.Counter(), "latency": [], "embeds": [], "examples": []}
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{spec['port']}") for _ in spec["tasks"]]
    try:
        start = time.time()
        await asyncio.gather(*(client_loop(pb2_grpc.DidmarkStub(ch), pb2, grpc, t, random.Random(t["client"]), out)
                               for ch, t in zip(channels, spec["tasks"])))
        end = time.time()
    finally:
        for ch in channels:
            await ch.close()
    out["start"], out["end"] = start, end
    out["status"] = dict(out["status"])
    out["examples"] = out["examples"][:10]
    return out


def worker(spec):
    return asyncio.run(worker_main(spec))


def load(pool, procs, port, stubs, tasks):
    specs = [{"port": port, "stubs": stubs, "tasks": tasks[i::procs]} for i in range(procs)]
    results = pool.map(worker, specs)
    merged = {"status": collections.Counter(), "latency": [], "embeds": [], "examples": []}
    for r in results:
        merged["status"].update(r["status"])
        merged["latency"] += r["latency"]
        merged["embeds"] += r["embeds"]
        merged["examples"] += r["examples"]
    merged["seconds"] = max(r["end"] for r in results) - min(r["start"] for r in results)
    return merged


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summary(m):
    lat = m["latency"]
    ok = sum(v for k, v in m["status"].items() if k.endswith(" OK"))
    return {"calls": sum(m["status"].values()), "ok": ok, "seconds": round(m["seconds"], 3),
            "calls_per_s": round(sum(m["status"].values()) / m["seconds"], 1),
            "p50_ms": round(1000 * percentile(lat, 0.5), 3) if lat else None,
            "p99_ms": round(1000 * percentile(lat, 0.99), 3) if lat else None,
            "max_ms": round(1000 * max(lat), 3) if lat else None,
            "status": dict(sorted(m["status"].items())), "examples": m["examples"]}


def check_outputs(root, embeds, plain_size):
    """Every Embed answered OK has its output; every output is complete; no temporaries."""
    problems = []
    for output, code in embeds:
        p = root / output
        if code == "OK" and not p.is_file():
            problems.append(f"{output}: answered OK, but the file is missing")
        if p.exists():
            b = p.read_bytes()
            n = int.from_bytes(b[:8], "little") if len(b) >= 8 else -1
            if len(b) != plain_size or n <= 0 or n > len(b) - 8 or b[8:9] != b"{":
                problems.append(f"{output}: not a complete safetensors file ({len(b)} bytes)")
    temps = [str(p) for p in root.rglob(".didmarkd-*")]
    problems += [f"temporary left behind: {t}" for t in temps]
    present = sum(1 for output, _ in embeds if (root / output).exists())
    return problems, present


def machine():
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--didmarkd", default=str(SOURCE / "build" / "bin" / "didmarkd"))
    ap.add_argument("--didmark", default=str(SOURCE / "build" / "bin" / "didmark"))
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--calls", type=int, default=2000, help="Verify calls per client in the steady phase")
    ap.add_argument("--cancel-calls", type=int, default=None, help="calls per client in the cancel phase "
                    "(default: calls / 10)")
    ap.add_argument("--sigterm-after", type=float, default=1.0, help="seconds of load before SIGTERM")
    ap.add_argument("--procs", type=int, default=min(4, os.cpu_count() or 1), help="client processes")
    ap.add_argument("--jobs", type=int, default=2, help="didmarkd --jobs")
    ap.add_argument("--params", type=int, default=20000, help="parameters of the checkpoint verified")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()
    cancel_calls = a.cancel_calls if a.cancel_calls is not None else max(10, a.calls // 10)

    work = Path(tempfile.mkdtemp(prefix="didmarkd-load-"))
    root = work / "root"
    (root / "out").mkdir(parents=True)
    stubs = work / "stubs"
    stubs.mkdir()
    generate_stubs(stubs)
    (work / "tokens.jsonl").write_text(json.dumps({"name": "load", "token": TOKEN, "scopes": ["verify", "embed"]}) + "\n")
    os.chmod(work / "tokens.jsonl", 0o600)
    run([a.didmark, "synth", "checkpoint", "-o", root / "plain.safetensors", "--params", a.params, "--hidden", 64])
    run([a.didmark, "id", "new", "-o", work / "owner.id.json"])
    owner = json.loads(run([a.didmark, "id", "export-key", work / "owner.id.json"]))
    run([a.didmark, "embed", root / "plain.safetensors", "-o", root / "marked.safetensors", "--id",
         work / "owner.id.json", "--strength", "0.05", "--max-change", "0.1"])
    plain_size = (root / "plain.safetensors").stat().st_size
    base = {"file": "marked.safetensors", "plain": "plain.safetensors", "did": owner["did"], "key": owner["key"]}

    results = {"machine": machine(), "clients": a.clients, "procs": a.procs, "jobs": a.jobs,
               "file_bytes": (root / "marked.safetensors").stat().st_size, "params": a.params}
    failures = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.procs) as pool:
        # steady
        srv = Server(a.didmarkd, work, "steady", a.jobs, a.clients * 4)
        cpu0 = srv.cpu_seconds()
        tasks = [dict(base, client=c, calls=a.calls, mode="steady") for c in range(a.clients)]
        m = load(pool, a.procs, srv.port, str(stubs), tasks)
        cpu = srv.cpu_seconds() - cpu0
        rc = srv.stop()
        s = summary(m)
        s["server_cpu_ms_per_call"] = round(1000 * cpu / max(1, s["calls"]), 3)
        s["server_exit"] = rc
        s["log_lines"] = sum(1 for e in srv.events() if "method" in e)
        s["unexpected"] = s["calls"] - s["ok"]
        results["steady"] = s
        if s["unexpected"] or rc != 0 or s["log_lines"] != s["calls"]:
            failures.append("steady")
        p50 = (s["p50_ms"] or 1) / 1000

        # cancel
        srv = Server(a.didmarkd, work, "cancel", a.jobs, a.clients * 4)
        tasks = [dict(base, client=c, calls=cancel_calls, mode="cancel", p50=p50, embed_every=10)
                 for c in range(a.clients)]
        m = load(pool, a.procs, srv.port, str(stubs), tasks)
        rc = srv.stop()
        s = summary(m)
        s["unexpected"] = sum(v for k, v in m["status"].items()
                              if k.split()[1] not in ("OK", "CANCELLED", "DEADLINE_EXCEEDED"))
        problems, present = check_outputs(root, m["embeds"], plain_size)
        s["embeds"] = len(m["embeds"])
        s["embed_outputs"] = present
        s["output_problems"] = problems[:10]
        s["server_exit"] = rc
        results["cancel"] = s
        if s["unexpected"] or problems or rc != 0:
            failures.append("cancel")
        shutil.rmtree(root / "out")
        (root / "out").mkdir()

        # sigterm during load
        srv = Server(a.didmarkd, work, "sigterm", a.jobs, a.clients * 4)
        tasks = [dict(base, client=c, mode="sigterm", stop_at=time.time() + 120, embed_every=20)
                 for c in range(a.clients)]
        specs = [{"port": srv.port, "stubs": str(stubs), "tasks": tasks[i::a.procs]} for i in range(a.procs)]
        pending = pool.map_async(worker, specs)
        time.sleep(a.sigterm_after)
        t_sig = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(timeout=120)
        drain = time.time() - t_sig
        srv.log.close()
        parts = pending.get(timeout=300)
        merged = {"status": collections.Counter(), "latency": [], "embeds": [], "examples": []}
        for r in parts:
            merged["status"].update(r["status"])
            merged["latency"] += r["latency"]
            merged["embeds"] += r["embeds"]
            merged["examples"] += r["examples"]
        merged["seconds"] = max(r["end"] for r in parts) - min(r["start"] for r in parts)
        s = summary(merged)
        s["unexpected"] = sum(v for k, v in merged["status"].items() if k.split()[1] not in ("OK", "UNAVAILABLE"))
        problems, present = check_outputs(root, merged["embeds"], plain_size)
        events = srv.events()
        drained = [e for e in events if e.get("event") == "draining"]
        s["in_flight_at_sigterm"] = drained[0]["in_flight"] if drained else None
        s["calls_logged_after_sigterm"] = sum(1 for e in events if "method" in e and e["status"] == "OK"
                                              and drained and e["time"] >= drained[0]["time"])
        s["server_log_status"] = dict(collections.Counter(e["status"] for e in events if "method" in e))
        s["drain_seconds"] = round(drain, 3)
        s["server_exit"] = rc
        s["stopped_logged"] = any(e.get("event") == "stopped" for e in events)
        s["embeds"] = len(merged["embeds"])
        s["embed_outputs"] = present
        s["output_problems"] = problems[:10]
        results["sigterm"] = s
        if s["unexpected"] or problems or rc != 0 or not s["stopped_logged"]:
            failures.append("sigterm")

    results["failures"] = failures
    text = json.dumps(results, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work folder kept: {work}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
