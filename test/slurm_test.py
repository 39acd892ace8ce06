#!/usr/bin/env python3
"""`groupvit segment` scaled out on Slurm job arrays, on a real single-node cluster (test/slurm_cluster.py).

    slurm_test.py BINARY FIXTURES_DIR WORK_DIR CASE

FIXTURES_DIR is scripts/make_cli_fixtures.py's output (its small model and images). CASE is one of the
functions named test_*; each is its own CTest test (slurm.CASE, test/slurm_tests.cmake). Exit 0 = pass.

Every case compares with a reference: one unsharded run of the same command line on this machine,
without Slurm. A sharded run is complete when the union of its results.shard-*-of-N.jsonl keys is the
reference's, no key is recorded twice, every labels PNG is byte-identical to the reference's, and the
output directory holds nothing else than the CLI's results, errors, labels and lock files.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import SlurmCluster, die_with_parent  # noqa: E402

BIN, FIX, WORK = None, None, None
LABELS = "cat,astronaut,cup of coffee,grass,rocket"
JOB_TIMEOUT = 120  # seconds for one array to leave the queue
# The lock files the CLI keeps in an output directory (groupvit/formats/directory_lock.h): .groupvit.lock,
# and .groupvit.shard-I-of-N.lock per shard. Its temporary files are NAME.tmp-PID-SERIAL-SALT
# (groupvit/formats/atomic_file.cpp), renamed into place or removed.


def clean_env():
    """This environment without array/indexed-job variables (the test may itself run inside a Slurm
    job or a Kubernetes pod): the local reference runs unsharded, and Slurm sets its own in the tasks."""
    return {k: v for k, v in os.environ.items() if not (k.startswith("SLURM_") or k == "JOB_COMPLETION_INDEX")}


def fresh(name):
    d = WORK / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def make_images(d, n, seed, lo=24, hi=96):
    """n deterministic PNGs of different sizes (lo..hi pixels a side): crops of the fixture photos, resized."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [np.array(Image.open(FIX / "images" / name).convert("RGB")) for name in ("chelsea.png", "astronaut.jpg")]
    for i in range(n):
        src = photos[i % len(photos)]
        h, w = src.shape[:2]
        ch, cw = int(rng.integers(h // 4, h + 1)), int(rng.integers(w // 4, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        size = (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))
        Image.fromarray(src[y:y + ch, x:x + cw]).resize(size, Image.BILINEAR).save(d / f"img{i:04d}.png")
    return d


def segment_args(images, out, extra=()):
    return [BIN, "segment", "--model", str(FIX / "model"), "--labels", LABELS, "--input", str(images),
            "--output", str(out), "--no-overlay", "--quiet", *extra]


def hf_args(images, out):
    # One LibTorch thread everywhere: each task has one CPU of the node, and the machine may be busy with
    # other tests (several multi-threaded runs on two cores are many times slower than one thread each).
    return segment_args(images, out, ["--mode", "hf", "--threads", "1"])


def reference(argv):
    """Runs the unsharded reference locally (no Slurm)."""
    p = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=240)
    assert p.returncode == 0, f"reference run exited {p.returncode}: {shlex.join(argv)}\n{p.stderr}"


def job_script(argv, pre=""):
    """A job script: the bash lines `pre`, then argv as one quoted command line."""
    return f"{pre}{shlex.join(argv)}\n"


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def line_count(path):
    try:
        return sum(1 for line in Path(path).read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def expect_exit(cluster, job, tasks, code, why=""):
    """Every task in `tasks` ended and its job script exited `code`."""
    states = cluster.task_states(job)
    got = {t: states[t].exit_code if t in states else None for t in tasks}
    bad = {t: c for t, c in got.items() if c != code}
    assert not bad, (f"job {job}: expected every task of {sorted(tasks)} to exit {code}{why}; "
                     f"these did not (None = no exit status recorded): {bad}\n{cluster.describe(job)}")
    extra = set(states) - set(tasks)
    assert not extra, f"job {job}: unexpected tasks {sorted(extra)}\n{cluster.describe(job)}"
    return states


def lock_file(name):
    return name == ".groupvit.lock" or (name.startswith(".groupvit.shard-") and name.endswith(".lock"))


def stray_files(out):
    """Temporary files and hidden files other than the CLI's lock files (anywhere under out)."""
    bad = []
    for p in sorted(out.rglob("*")):
        if ".tmp" in p.name or (p.name.startswith(".") and not lock_file(p.name)):
            bad.append(str(p.relative_to(out)))
    return bad


def check_complete(out, ref, count, what):
    """out holds the shards 0..count-1 of a complete run, equal to the unsharded reference ref."""
    ref_recs = records(ref / "results.jsonl")
    ref_keys = {r["key"] for r in ref_recs}
    assert len(ref_keys) == len(ref_recs), f"the reference recorded a key twice: {ref / 'results.jsonl'}"
    assert ref_keys, "the reference recorded nothing"
    names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    want_results = {f"results.shard-{i}-of-{count}.jsonl" for i in range(count)}
    results = {n for n in names if n.startswith("results")}
    assert results == want_results, (f"{what}: results files in {out}: missing {sorted(want_results - results)}, "
                                      f"unexpected {sorted(results - want_results)}")
    seen = {}  # key -> [files]
    for name in sorted(results):
        for rec in records(out / name):
            seen.setdefault(rec["key"], []).append(name)
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    missing, extra = ref_keys - set(seen), set(seen) - ref_keys
    assert not twice and not missing and not extra, (
        f"{what}: keys of {sorted(results)} vs the reference's {len(ref_keys)}: "
        f"{len(missing)} missing {sorted(missing)[:10]}, {len(extra)} not in the reference {sorted(extra)[:10]}, "
        f"{len(twice)} recorded more than once {dict(list(sorted(twice.items()))[:10])}")
    errors = {n for n in names if n.startswith("errors")}
    for name in sorted(errors):
        text = (out / name).read_text()
        assert text == "", f"{what}: {out / name} is not empty:\n{text[:2000]}"
    differ, absent = [], []
    for key in sorted(ref_keys):
        got = out / f"{key}.labels.png"
        if not got.exists():
            absent.append(key)
        elif got.read_bytes() != (ref / f"{key}.labels.png").read_bytes():
            differ.append(key)
    assert not absent and not differ, (f"{what}: labels PNGs vs the reference's: {len(absent)} missing {absent[:10]}, "
                                       f"{len(differ)} not byte-identical {differ[:10]}")
    labels = {f"{k}.labels.png" for k in ref_keys}
    other = sorted(n for n in names - results - errors - labels if not lock_file(n))
    assert not other, f"{what}: files in {out} that a complete run does not write: {other[:20]}"
    stray = stray_files(out)
    assert not stray, f"{what}: temporary or hidden files left in {out}: {stray[:20]}"
    print(f"{what}: {len(ref_keys)} keys in {count} shards, each once, labels byte-identical to the reference")


def array_case(name, array, tasks):
    """An array whose tasks each run the same command line; the CLI takes its shard from Slurm's variables."""
    work = fresh(name)
    images = make_images(work / "images", 40, seed=1)
    ref, out = work / "ref", work / "out"
    reference(hf_args(images, ref))
    with SlurmCluster() as cluster:
        t = time.time()
        job = cluster.sbatch(job_script(hf_args(images, out)), array=array)
        cluster.wait(job, JOB_TIMEOUT)
        print(f"--array={array}: job {job} left the queue after {time.time() - t:.1f}s")
        expect_exit(cluster, job, tasks, 0)
    check_complete(out, ref, len(tasks), f"--array={array}")


def test_array4():
    array_case("array4", "0-3", [0, 1, 2, 3])


def test_stepped():
    # Task IDs 1,3,5,7 (SLURM_ARRAY_TASK_STEP=2): the CLI maps them to shards (ID-MIN)/STEP of COUNT = 0..3 of 4.
    array_case("stepped", "1-7:2", [1, 3, 5, 7])


def test_list():
    # A list (COUNT 4 != (MAX-MIN)/STEP+1 = 7) has no arithmetic mapping to shards: the CLI refuses it before
    # any work and tells the user to give --shard.
    work = fresh("list")
    images = make_images(work / "images", 40, seed=2)
    ref, out = work / "ref", work / "out"
    reference(hf_args(images, ref))
    tasks = [1, 3, 5, 7]
    with SlurmCluster() as cluster:
        job = cluster.sbatch(job_script(hf_args(images, out)), array="1,3,5,7")
        cluster.wait(job, JOB_TIMEOUT)
        expect_exit(cluster, job, tasks, 1, " (a list-form array is refused)")
        quiet = [t for t in tasks if "--shard" not in cluster.log_text(job, t, "err")]
        assert not quiet, f"job {job}: the stderr of tasks {quiet} does not mention --shard\n{cluster.describe(job)}"
        written = sorted(p.name for p in out.iterdir() if not lock_file(p.name)) if out.exists() else []
        assert not written, f"the refused list array wrote into {out}: {written[:20]}"
        # As the message says: map the list to explicit shards.
        pre = ('case "$SLURM_ARRAY_TASK_ID" in 1) idx=0 ;; 3) idx=1 ;; 5) idx=2 ;; 7) idx=3 ;;'
               ' *) echo "unexpected task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;; esac\n')
        script = job_script(hf_args(images, out), pre=pre).rstrip("\n") + ' --shard "$idx/4"\n'
        job = cluster.sbatch(script, array="1,3,5,7")
        cluster.wait(job, JOB_TIMEOUT)
        expect_exit(cluster, job, tasks, 0)
    check_complete(out, ref, 4, "--array=1,3,5,7 with --shard $idx/4")


def test_cancel_resume():
    # nvlabs mode (448 short side, so 1-2 sliding windows for these aspect ratios) at batch size 1: about
    # 0.1 s an image with one thread on an idle machine, so that each of the 4 shards of 160 images (about
    # 40 each) runs for several seconds.
    work = fresh("cancel_resume")
    images = make_images(work / "images", 160, seed=3, lo=48, hi=64)
    ref, out = work / "ref", work / "out"
    args = ["--batch-size", "1", "--threads", "1"]
    shard2 = out / "results.shard-2-of-4.jsonl"
    # The reference runs beside the array (it needs the CPU time of all four tasks).
    ref_proc = subprocess.Popen(segment_args(images, ref, args), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=clean_env(),
                                preexec_fn=die_with_parent)
    try:
        with SlurmCluster() as cluster:
            script = job_script(segment_args(images, out, args))
            job = cluster.sbatch(script, array="0-3")
            t, deadline = time.time(), time.time() + JOB_TIMEOUT
            while line_count(shard2) < 1:
                assert time.time() < deadline, f"task 2 recorded nothing in {JOB_TIMEOUT}s\n{cluster.describe(job)}"
                assert not cluster.status_file(job, 2).exists(), \
                    f"task 2 ended before it recorded a result\n{cluster.describe(job)}"
                time.sleep(0.05)
            cluster.scancel(f"{job}_2")
            print(f"cancelled {job}_2 {time.time() - t:.1f}s after submission, {line_count(shard2)} recorded")
            cluster.wait(job, JOB_TIMEOUT)
            states = cluster.task_states(job)
            got = {i: states[i].exit_code if i in states else None for i in range(4)}
            assert got == {0: 0, 1: 0, 2: 143, 3: 0}, (
                f"exit codes {got}, expected tasks 0, 1, 3 to exit 0 and the cancelled task 2 to exit 143 "
                f"(SIGTERM: the CLI finishes its batch and exits 128+15; 0 for task 2 would mean it finished "
                f"before the cancel reached it)\n{cluster.describe(job)}")
            assert states[2].state == "CANCELLED", f"Slurm's state of task 2: {states[2]}"
            partial = line_count(shard2)
            stray = stray_files(out)
            assert not stray, f"temporary or hidden files left by the cancelled task: {stray}"
            ref_err = ref_proc.communicate(timeout=240)[1]
            assert ref_proc.returncode == 0, f"reference run exited {ref_proc.returncode}\n{ref_err}"
            print(f"task 2 recorded {partial} results before it stopped")

            # (a) The naive resubmission of task 2 (the same script, --array=2) would be an unsharded run
            # (SLURM_ARRAY_TASK_COUNT=1) into a directory that holds shard results: refused, before any work.
            before = {p.name: p.stat().st_size for p in out.iterdir() if not lock_file(p.name)}
            job_a = cluster.sbatch(script, array="2")
            cluster.wait(job_a, JOB_TIMEOUT)
            expect_exit(cluster, job_a, [2], 1, " (an unsharded run into a directory holding shard results)")
            err = cluster.log_text(job_a, 2, "err")
            assert "--shard" in err, f"the refusal does not mention --shard:\n{err}"
            after = {p.name: p.stat().st_size for p in out.iterdir() if not lock_file(p.name)}
            changed = sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
            assert not changed, f"the refused run changed {out}: {changed[:20]}"

            # (b) Resubmitted as the shard it is, resuming: the shard is completed, nothing is recorded twice.
            job_b = cluster.sbatch(job_script(segment_args(images, out, args + ["--shard", "2/4", "--resume",
                                                                                 "--json"])), array="2")
            cluster.wait(job_b, JOB_TIMEOUT)
            expect_exit(cluster, job_b, [2], 0)
            stdout = cluster.log_text(job_b, 2, "out").strip()
            assert stdout, f"the resumed shard printed no --json summary\n{cluster.describe(job_b)}"
            summary = json.loads(stdout.splitlines()[-1])
            assert summary["skipped_done"] == partial and summary["failed"] == 0, (
                f"the resumed shard's summary {summary}: expected skipped_done={partial} (what the cancelled "
                "task recorded) and failed=0")
    finally:
        if ref_proc.poll() is None:
            ref_proc.kill()
            ref_proc.wait()
    check_complete(out, ref, 4, "cancelled task 2 resumed with --shard 2/4 --resume")
    total = line_count(shard2)
    assert partial < total, (f"task 2 had recorded all {total} of its images before the cancel reached it: "
                             "make the input larger")


def main():
    global BIN, FIX, WORK
    BIN, FIX, WORK = str(Path(sys.argv[1]).resolve()), Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    t = time.time()
    globals()["test_" + sys.argv[4]]()
    print(f"{sys.argv[4]}: passed in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
