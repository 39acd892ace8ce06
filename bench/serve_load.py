#!/usr/bin/env python3
"""Load benchmark of `groupvit serve` (not a test): dynamic batching against one request per model call.

    serve_load.py BINARY MODEL_DIR IMAGE [--report docs/serve-benchmark.md] [--requests 2000] [--clients 16]
                  [--batch-sizes 8,1] [--mode hf] [--labels cat,dog,...] [--server-arg=--device=cuda ...]

For each --max-batch-size it starts `BINARY serve -m MODEL_DIR --max-batch-size B` on a free loopback port,
warms it up, then --clients threads (each with its own requests.Session; the server closes every connection after its answer) send
--requests POST /v1/segment requests of IMAGE (multipart, the body encoded once) as fast as they are answered.
It reports latency percentiles, requests/s, failures (must be 0: exit 1 otherwise) and the throughput ratio of
the first batch size to the last, names the CPU, and writes the Markdown report. Client and server share the
machine: on few cores the client's own work shows in the numbers.
"""
import argparse
import datetime
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores():
    try:
        return len(os.sched_getaffinity(0)), os.cpu_count()
    except AttributeError:
        return os.cpu_count(), os.cpu_count()


def multipart(fields):
    boundary = "groupvit-load-" + os.urandom(8).hex()
    out = b""
    for name, value, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        ctype = "Content-Type: application/octet-stream\r\n" if filename else ""
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n{ctype}\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


class Server:
    def __init__(self, binary, model, batch, extra, log):
        self.port = free_port()
        self.cmd = [binary, "serve", "-m", model, "--port", str(self.port), "--max-batch-size", str(batch), *extra]
        self.log = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(self.cmd, stdout=f, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited {self.proc.returncode}: {' '.join(self.cmd)}\n{Path(log).read_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.proc.kill()
        raise SystemExit(f"server did not come up in 120 s: {' '.join(self.cmd)}\n{Path(log).read_text()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "killed"


def run_load(url, body, ctype, n, clients, timeout):
    """n requests from `clients` threads; returns (latencies in s of the successes, failures, wall s, timings)."""
    lock = threading.Lock()
    state = {"next": 0}
    lat, fails, timings = [], [], []

    def client():
        s = requests.Session()
        while True:
            with lock:
                if state["next"] >= n:
                    return
                state["next"] += 1
            t = time.perf_counter()
            try:
                r = s.post(url + "/v1/segment", data=body, headers={"Content-Type": ctype}, timeout=timeout)
                dt = time.perf_counter() - t
                if r.status_code == 200:
                    tm = r.json().get("timings_ms", {})
                    with lock:
                        lat.append(dt)
                        timings.append(tm)
                else:
                    with lock:
                        fails.append(f"{r.status_code} {r.text[:200]}")
            except (requests.RequestException, ValueError) as e:
                with lock:
                    fails.append(repr(e)[:200])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sorted(lat), fails, time.perf_counter() - t0, timings


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("model_dir")
    ap.add_argument("image")
    ap.add_argument("--report", default="docs/serve-benchmark.md", help="Markdown report to write")
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per batch size")
    ap.add_argument("--warmup", type=int, default=32, help="requests before measuring (not counted)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    ap.add_argument("--batch-sizes", default="8,1", help="--max-batch-size values, the first one compared with the last")
    ap.add_argument("--mode", default="hf", choices=["hf", "nvlabs"])
    ap.add_argument("--labels", default="cat,dog,car,tree,person")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per request")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra argument for the server, e.g. --server-arg=--device --server-arg=cuda (repeatable)")
    ap.add_argument("--log-dir", default=None, help="where the servers' logs go (default: beside the report)")
    a = ap.parse_args()

    image = Path(a.image).read_bytes()
    body, ctype = multipart([("image", image, Path(a.image).name), ("labels", a.labels.encode(), None),
                             ("mode", a.mode.encode(), None), ("overlay", b"false", None)])
    try:
        from PIL import Image
        with Image.open(a.image) as im:
            size = f"{im.width}x{im.height}"
    except Exception:  # noqa: BLE001  Pillow is optional here
        size = "?"
    report = Path(a.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    log_dir = Path(a.log_dir) if a.log_dir else Path(tempfile.mkdtemp(prefix="serve-load-"))  # logs stay out of docs/
    version = subprocess.run([a.binary, "--version"], capture_output=True, text=True).stdout.strip()
    batch_sizes = [int(b) for b in a.batch_sizes.split(",")]

    rows, info, all_ok = [], None, True
    for b in batch_sizes:
        srv = Server(a.binary, a.model_dir, b, a.server_arg, log_dir / f"serve-load-b{b}.log")
        try:
            info = requests.get(srv.url + "/v1/model", timeout=10).json()
            assert info.get("max_batch_size") == b, info
            _, wfails, _, _ = run_load(srv.url, body, ctype, a.warmup, a.clients, a.timeout)
            lat, fails, wall, timings = run_load(srv.url, body, ctype, a.requests, a.clients, a.timeout)
        finally:
            rc = srv.stop()
        ms = [x * 1000 for x in lat]
        row = {"batch": b, "requests": a.requests, "ok": len(lat), "failures": len(fails) + len(wfails),
               "wall_s": wall, "rps": len(lat) / wall if wall else 0.0, "p50": percentile(ms, 50),
               "p90": percentile(ms, 90), "p99": percentile(ms, 99), "max": ms[-1] if ms else float("nan"),
               "queue": mean([t.get("queue", 0) for t in timings]), "model": mean([t.get("model", 0) for t in timings]),
               "exit": rc, "examples": (wfails + fails)[:3]}
        rows.append(row)
        all_ok &= row["failures"] == 0 and rc == 0
        print(f"max-batch-size {b}: {row['ok']}/{a.requests} ok, {row['failures']} failed, {row['rps']:.1f} req/s, "
              f"p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, exit {rc}", flush=True)
        for e in row["examples"]:
            print("   ", e)

    ratio = rows[0]["rps"] / rows[-1]["rps"] if len(rows) > 1 and rows[-1]["rps"] else float("nan")
    logical, total = cores()
    cmd = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    server_args = " ".join(["--max-batch-size B", *a.server_arg])
    lines = [
        "# `groupvit serve` load benchmark",
        "",
        f"Made on {datetime.date.today().isoformat()} by `{cmd}`.",
        "",
        f"- CPU: {cpu_name()}, {logical} cores available ({total} in the machine); {platform.system()} "
        f"{platform.release()}",
        f"- groupvit: {version or '?'}; model `{a.model_dir}` (device {info.get('device') if info else '?'}, "
        f"dtype {info.get('dtype') if info else '?'}, image size {info.get('image_size') if info else '?'})",
        f"- load: {a.clients} concurrent clients (threads, one `requests.Session` each, a new connection per request as the server closes each after its answer), {a.requests} "
        f"measured requests after {a.warmup} of warm-up per server; `POST /v1/segment` multipart, mode {a.mode}, "
        f"{len(a.labels.split(','))} labels, `overlay=false`, image `{Path(a.image).name}` ({size})",
        f"- server: `groupvit serve -m MODEL {server_args}`, other options default "
        "(`--max-wait-ms 10`, `--max-queue 64`, `--max-connections 32`); client and server on the same machine",
        "",
        "| --max-batch-size | requests | failures | wall (s) | requests/s | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) "
        "| mean queue (ms) | mean model (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['requests']} | {r['failures']} | {r['wall_s']:.1f} | {r['rps']:.1f} | "
                     f"{r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['queue']:.1f} | "
                     f"{r['model']:.1f} |")
    lines += ["", f"Throughput ratio, --max-batch-size {rows[0]['batch']} over {rows[-1]['batch']}: **{ratio:.2f}x**."
              if len(rows) > 1 else ""]
    lines += ["", "Latency: from sending the request to the whole answer, at the client. Queue and model: the "
              "server's own `timings_ms` (mean over the answers). Failures: answers other than 200 or errors "
              "(must be 0)."]
    if not all_ok:
        lines += ["", "**FAILED**: " + "; ".join(f"batch {r['batch']}: {r['failures']} failures {r['examples']}, "
                                                  f"exit {r['exit']}" for r in rows)]
    report.write_text("\n".join(lines) + "\n")
    print(f"wrote {report}; throughput ratio {ratio:.2f}")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
