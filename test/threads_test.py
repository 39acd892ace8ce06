#!/usr/bin/env python3
"""The CLI beside a real busy neighbour: a process spinning on one of the CPUs the run may use.

    threads_test.py BINARY FIXTURES_DIR WORK_DIR

`groupvit embed` into a directory, batch 1, --threads = the CPUs of this process's affinity mask,
twice beside the busy loop: by default its --json summary must say it ran on fewer threads
(threads.fewest below the CPUs; on one CPU: one), with --fixed-threads on all of them; the
embeddings of the two runs must agree (only the threads differ). CTest runs it alone (RUN_SERIAL):
other tests on the cores would be neighbours too.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def embed(binary, model, images, out, threads, *extra):
    p = subprocess.run([binary, "embed", "-m", str(model), "-i", str(images), "-o", str(out), "--batch-size", "1",
                        "-t", str(threads), "--json", "--quiet", *extra], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stderr}"
    summary = json.loads(p.stdout)
    features = np.concatenate([np.load(f) for f in sorted(out.glob("embeddings-*.npy"))])
    return summary, features


def main():
    binary, fixtures, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    shutil.rmtree(work, ignore_errors=True)
    images = work / "images"
    images.mkdir(parents=True)
    # Enough batches that the run spans several of the policy's 200 ms measurements.
    source = sorted((fixtures / "images").iterdir())
    for i in range(60):
        shutil.copy(source[i % len(source)], images / f"{i:03d}{source[i % len(source)].suffix}")
    cpus = sorted(os.sched_getaffinity(0))
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                 preexec_fn=lambda: os.sched_setaffinity(0, {cpus[0]}))
    try:
        time.sleep(0.5)
        adaptive, a = embed(binary, fixtures / "model", images, work / "adaptive", len(cpus))
        fixed, b = embed(binary, fixtures / "model", images, work / "fixed", len(cpus), "--fixed-threads")
    finally:
        neighbour.kill()
        neighbour.wait()
    print("adaptive:", adaptive["threads"], "fixed:", fixed["threads"], "cpus:", len(cpus))
    assert adaptive["processed"] == fixed["processed"] == 60, (adaptive, fixed)
    assert adaptive["threads"]["adaptive"] is True and adaptive["threads"]["most"] == len(cpus), adaptive["threads"]
    assert adaptive["threads"]["fewest"] == max(1, len(cpus) - 1), adaptive["threads"]
    assert fixed["threads"] == {"adaptive": False, "most": len(cpus), "fewest": len(cpus)}, fixed["threads"]
    err = float(np.abs(a - b).max() / np.abs(b).max())
    print("max relative difference between the runs' embeddings:", err)
    assert a.shape == b.shape and err < 1e-5, err
    return 0


if __name__ == "__main__":
    sys.exit(main())
