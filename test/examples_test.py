#!/usr/bin/env python3
"""The scale-out examples of examples/large-runs/ run as a user would run them.

    examples_test.py BINARY FIXTURES_DIR WORK_DIR CASE

FIXTURES_DIR is scripts/make_cli_fixtures.py's output (its small model and images). CASE is one of the
functions named test_* (each its own CTest test examples.CASE, test/examples_tests.cmake). Exit 0 = pass.

  k8s_manifest  k8s-indexed-job.yaml: Indexed mode, --shard-count = completions; the container's command
                line, with the container paths mapped to local ones, run once per JOB_COMPLETION_INDEX
                covers the shards exactly once, label maps byte-identical to one unsharded run.
  slurm_script  segment-array.sbatch submitted as it is (#SBATCH lines and all) with --array=0-3 to a real
                single-node cluster (test/slurm_cluster.py), variables from --export / the environment;
                same checks; then its comments' recipe for rerunning one task (--shard K/4) is followed.
  make_shards   make_shards.py's tar files read back (samples grouped by key, captions, --per-shard,
                determinism), and `groupvit embed` over the shards equals embed over the directory.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "large-runs"
MAKE_SHARDS = EXAMPLES / "make_shards.py"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_test import npy_rows as embed_rows  # noqa: E402  key -> row of embed --output DIR
from slurm_cluster import SlurmCluster  # noqa: E402

BIN, FIX, WORK = None, None, None
LABELS = "cat,dog,grass"
JOB_TIMEOUT = 120  # seconds for one array to leave the queue


def clean_env(**extra):
    """This environment without array/indexed-job variables (the test may itself run in a Slurm job or a pod)."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("SLURM_") or k == "JOB_COMPLETION_INDEX")}
    env.update(extra)
    return env


def fresh(name):
    d = WORK / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def run(argv, env=None, timeout=240, expect=0):
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env or clean_env(),
                       timeout=timeout)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"exit {p.returncode} (expected {expect}): {shlex.join(map(str, argv))}\n"
                             f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


def make_images(d, n, seed, lo=24, hi=80):
    """n deterministic images of different sizes, PNG and JPEG alternating: crops of the fixture photos."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [np.array(Image.open(FIX / "images" / name).convert("RGB")) for name in ("chelsea.png", "astronaut.jpg")]
    paths = []
    for i in range(n):
        src = photos[i % len(photos)]
        h, w = src.shape[:2]
        ch, cw = int(rng.integers(h // 4, h + 1)), int(rng.integers(w // 4, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        size = (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))
        img = Image.fromarray(src[y:y + ch, x:x + cw]).resize(size, Image.BILINEAR)
        path = d / f"img{i:04d}.{'png' if i % 2 == 0 else 'jpg'}"
        img.save(path, quality=90) if path.suffix == ".jpg" else img.save(path)
        paths.append(path)
    return paths


def make_shards(src, pattern, per_shard, *extra):
    """Runs make_shards.py; returns the brace pattern it prints last."""
    p = run([sys.executable, MAKE_SHARDS, src, pattern, "--per-shard", per_shard, *extra], env=clean_env())
    return p.stdout.strip().splitlines()[-1]


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def lock_file(name):
    return name == ".groupvit.lock" or (name.startswith(".groupvit.shard-") and name.endswith(".lock"))


def check_complete(out, ref, count, what):
    """out holds shards 0..count-1 of a complete run: the union of results.shard-I-of-N.jsonl keys is the
    unsharded reference's, no key twice, no errors, every labels PNG byte-identical, no stray files."""
    ref_keys = [r["key"] for r in records(ref / "results.jsonl")]
    assert ref_keys and len(set(ref_keys)) == len(ref_keys), f"reference {ref}: {len(ref_keys)} records, keys repeat?"
    top = {p.name for p in out.iterdir()}
    want = {f"results.shard-{i}-of-{count}.jsonl" for i in range(count)}
    got = {n for n in top if n.startswith("results")}
    assert got == want, f"{what}: results files missing {sorted(want - got)}, unexpected {sorted(got - want)}"
    seen = {}
    per_shard = {}
    for name in sorted(got):
        recs = records(out / name)
        per_shard[name] = len(recs)
        for rec in recs:
            seen.setdefault(rec["key"], []).append(name)
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    missing, extra = set(ref_keys) - set(seen), set(seen) - set(ref_keys)
    assert not twice and not missing and not extra, (
        f"{what}: {len(missing)} keys missing {sorted(missing)[:10]}, {len(extra)} not in the reference "
        f"{sorted(extra)[:10]}, {len(twice)} recorded more than once {dict(list(twice.items())[:10])}")
    for name in sorted(n for n in top if n.startswith("errors")):
        text = (out / name).read_text()
        assert text == "", f"{what}: {out / name} is not empty:\n{text[:2000]}"
    absent, differ = [], []
    for key in ref_keys:
        mine, theirs = out / f"{key}.labels.png", ref / f"{key}.labels.png"
        if not mine.exists():
            absent.append(key)
        elif mine.read_bytes() != theirs.read_bytes():
            differ.append(key)
    assert not absent and not differ, (f"{what}: labels PNGs vs the reference's: {len(absent)} missing {absent[:10]}, "
                                       f"{len(differ)} not byte-identical {differ[:10]}")
    expected = {f"{k}.labels.png" for k in ref_keys}
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    other = sorted(f for f in files - expected
                   if not (f.startswith(("results.", "errors.")) and "/" not in f) and not lock_file(f))
    assert not other, f"{what}: files a complete run does not write: {other[:20]}"
    empty = [n for n, c in per_shard.items() if c == 0]
    assert not empty, f"{what}: shards that recorded nothing (a poor split of {len(ref_keys)} keys?): {empty}"
    print(f"{what}: {len(ref_keys)} keys in {count} shards {sorted(per_shard.values())}, each once, "
          "labels byte-identical to the unsharded run")


# --- k8s_manifest ----------------------------------------------------------------------------------------

def option(argv, name):
    """The value after option `name` in argv (None when absent); refuses it twice."""
    at = [i for i, a in enumerate(argv) if a == name]
    assert len(at) <= 1, f"{name} given {len(at)} times in {argv}"
    if not at:
        return None
    assert at[0] + 1 < len(argv), f"{name} has no value in {argv}"
    return argv[at[0] + 1]


def without(argv, name, has_value=True):
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
        elif a == name:
            skip = 1 if has_value else 0
        else:
            out.append(a)
    return out


def map_paths(argv, mapping):
    """Replaces container path prefixes (an argument equal to one or starting with it + '/') by local ones."""
    out = []
    for a in argv:
        for container, local in mapping.items():
            if a == container or a.startswith(container + "/"):
                a = str(local) + a[len(container):]
                break
        out.append(a)
    return out


def test_k8s_manifest():
    work = fresh("k8s_manifest")
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "k8s-indexed-job.yaml").read_text()) if d]
    assert len(docs) == 1, f"expected one document, got {len(docs)}"
    job = docs[0]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job", (job.get("apiVersion"), job.get("kind"))
    spec = job["spec"]
    assert spec.get("completionMode") == "Indexed", spec.get("completionMode")
    completions = spec["completions"]
    assert isinstance(completions, int) and completions > 1, completions
    assert spec.get("parallelism") == completions, (spec.get("parallelism"), completions)
    pod = spec["template"]["spec"]
    assert pod.get("restartPolicy") in ("Never", "OnFailure"), pod.get("restartPolicy")
    (container,) = pod["containers"]
    argv = [str(a) for a in container.get("command", [])] + [str(a) for a in container.get("args", [])]
    assert argv[:2] == ["groupvit", "segment"], argv
    assert option(argv, "--shard-count") == str(completions), \
        f"--shard-count {option(argv, '--shard-count')} != completions {completions}"
    assert option(argv, "--shard") is None, "--shard would override the completion index"
    assert "--resume" in argv, argv
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/models", "/data", "/out"):
        assert path in mounts and mounts[path] in volumes, f"no volume mounted at {path}: {mounts}"
        assert "persistentVolumeClaim" in volumes[mounts[path]], volumes[mounts[path]]
    for path in ("--model", "--input", "--output"):
        value = option(argv, path)
        assert value and any(value == m or value.startswith(m + "/") for m in mounts), \
            f"{path} {value} is not on a mounted volume {sorted(mounts)}"

    # The data: 32 images as shards shards-000.tar .. shards-015.tar, made by make_shards.py.
    images = make_images(work / "images", 32, seed=11)
    data, out, ref = work / "data", work / "out", work / "ref"
    pattern = make_shards(work / "images", data / "shards-%03d.tar", 2)
    mapping = {"/models/m": FIX / "model", "/data": data, "/out": out}
    local = map_paths(argv, mapping)
    assert option(local, "--input") == pattern, \
        f"the manifest's --input {option(argv, '--input')} maps to {option(local, '--input')}, not {pattern}"
    local[0] = BIN
    # One LibTorch thread each locally (the machine's cores are few); --quiet for short logs.
    local = without(local, "--threads") + ["--threads", "1", "--quiet"]
    t = time.time()
    run(without(without(map_paths(local, {str(out): ref}), "--shard-count"), "--resume", has_value=False))
    t_ref = time.time() - t
    t = time.time()
    for i in range(completions):
        run(local + ["--json"], env=clean_env(JOB_COMPLETION_INDEX=str(i)))
    print(f"unsharded reference {t_ref:.1f}s; {completions} indexed completions {time.time() - t:.1f}s")
    check_complete(out, ref, completions, "k8s indexed job")
    assert len(records(ref / "results.jsonl")) == len(images)

    # A pod restarted with its index (backoffLimitPerIndex) resumes: nothing is redone.
    p = run(local + ["--json"], env=clean_env(JOB_COMPLETION_INDEX="1"))
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["processed"] == 0 and summary["skipped_done"] > 0, summary
    assert summary["shard"] == {"count": completions, "index": 1, "source": "kubernetes"}, summary["shard"]
    check_complete(out, ref, completions, "k8s indexed job after a restarted pod")


# --- slurm_script ----------------------------------------------------------------------------------------

SBATCH = EXAMPLES / "segment-array.sbatch"


def sbatch_directives(text):
    """The #SBATCH lines sbatch reads: those before the first line that is neither a comment nor blank."""
    out = []
    for line in text.splitlines()[1:]:
        s = line.strip()
        if s and not s.startswith("#"):
            break
        if s.startswith("#SBATCH"):
            out.append(s[len("#SBATCH"):].strip())
    return out


def submit(cluster, array, env, *script_args, extra=()):
    """sbatch of the example script itself (not through SlurmCluster.sbatch's wrapper, so that its own
    #SBATCH lines count); logs where cluster.log_file looks. Returns the job id."""
    argv = ["sbatch", "--parsable", f"--array={array}", "--cpus-per-task=1",
            "-o", f"{cluster.root}/jobs/%A_%a.out", "-e", f"{cluster.root}/jobs/%A_%a.err",
            f"--chdir={cluster.root}/jobs", *extra, str(SBATCH), *script_args]
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0, f"{shlex.join(argv)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    job = p.stdout.strip().split(";")[0]
    assert job.isdigit(), p.stdout
    return job


def expect_states(cluster, job, tasks, state, exit_code):
    states = cluster.task_states(job)
    got = {t: (states[t].state, states[t].slurm_exit) if t in states else None for t in tasks}
    bad = {t: s for t, s in got.items() if s != (state, exit_code)}
    assert not bad, f"job {job}: expected {state} ExitCode={exit_code} for {tasks}, got {bad}\n{cluster.describe(job)}"
    extra = set(states) - set(tasks)
    assert not extra, f"job {job}: unexpected tasks {sorted(extra)}\n{cluster.describe(job)}"


def test_slurm_script():
    text = SBATCH.read_text()
    directives = sbatch_directives(text)
    names = {d.split("=")[0] for d in directives}
    for want in ("--job-name", "--cpus-per-task", "--time", "--output"):
        assert want in names, f"no #SBATCH {want} in {SBATCH.name}: {directives}"
    assert any(d.startswith("--output") and "%A" in d and "%a" in d for d in directives), directives
    assert not any(d.startswith("--array") for d in directives), "the array belongs on the sbatch command line"
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "--shard-count" not in code and "--shard " not in code, "the shard comes from the array"
    assert "--resume" in code and "trap" not in code, "--resume, and no trap (the CLI handles SIGTERM)"
    assert "--shard K/16 --resume" in text or re.search(r"--shard K/16", text), "the rerun recipe"

    work = fresh("slurm_script")
    make_images(work / "images", 32, seed=12)
    pattern = make_shards(work / "images", work / "data" / "shards-%03d.tar", 3)
    ref, out = work / "ref", work / "out"
    variables = {"MODEL": str(FIX / "model"), "INPUT": pattern, "GROUPVIT": BIN}
    # The reference: the script itself run here as a one-task array (Slurm's variables for --array=0,
    # which the CLI takes as unsharded), so that it runs exactly the script's command line.
    one_task = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "0",
                "SLURM_ARRAY_TASK_STEP": "1", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_JOB_ID": "0",
                "SLURM_CPUS_PER_TASK": "1"}
    run(["bash", SBATCH], env=clean_env(**variables, OUT=str(ref), LABELS=LABELS, **one_task))
    with SlurmCluster() as cluster:
        # MODEL, INPUT, OUT, GROUPVIT through --export; LABELS (commas, which --export would split at)
        # from the submitting environment, which --export=ALL passes on.
        env = dict(cluster.env, LABELS=LABELS)
        export = "--export=ALL," + ",".join(f"{k}={v}" for k, v in dict(variables, OUT=str(out)).items())
        t = time.time()
        job = submit(cluster, "0-3", env, extra=[export])
        cluster.wait(job, JOB_TIMEOUT)
        print(f"--array=0-3: job {job} left the queue after {time.time() - t:.1f}s")
        expect_states(cluster, job, [0, 1, 2, 3], "COMPLETED", "0:0")
        for task in range(4):
            err = cluster.log_text(job, task, "err")
            assert f"task {task} of 4" in err, f"task {task}'s stderr:\n{err}"
        check_complete(out, ref, 4, "segment-array.sbatch --array=0-3")

        # The comments' recipe for one failed task: lose shard 2's results, then (a) --array=2 alone is
        # refused (a one-task array looks unsharded), (b) --array=2 ... --shard 2/4 redoes exactly shard 2.
        shard2 = out / "results.shard-2-of-4.jsonl"
        lost = [r["key"] for r in records(shard2)]
        shard2.unlink()
        for key in lost:
            (out / f"{key}.labels.png").unlink()
        job_a = submit(cluster, "2", env, extra=[export])
        cluster.wait(job_a, JOB_TIMEOUT)
        expect_states(cluster, job_a, [2], "FAILED", "1:0")
        err = cluster.log_text(job_a, 2, "err")
        assert "--shard" in err, f"the refusal does not mention --shard:\n{err}"
        assert not shard2.exists() and not (out / "results.jsonl").exists(), "the refused task wrote results"
        job_b = submit(cluster, "2", env, "--shard", "2/4", "--json", extra=[export])
        cluster.wait(job_b, JOB_TIMEOUT)
        expect_states(cluster, job_b, [2], "COMPLETED", "0:0")
        summary = json.loads(cluster.log_text(job_b, 2, "out").strip().splitlines()[-1])
        assert summary["processed"] == len(lost) and summary["skipped_done"] == 0, (summary, len(lost))
        check_complete(out, ref, 4, "task 2 rerun with --shard 2/4")


# --- make_shards -----------------------------------------------------------------------------------------

def read_shard(path):
    """[(key, {ext: bytes})] in archive order, grouping consecutive members by key as WebDataset does;
    also checks the members' metadata."""
    samples = []
    mode = "r:gz" if str(path).endswith(".gz") else "r:"
    with tarfile.open(path, mode) as tar:
        for m in tar.getmembers():
            assert m.isfile(), (path, m.name, m.type)
            assert m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.mode == 0o644, (path, m.name, m.mtime, m.mode)
            parent, _, base = m.name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{parent}/{stem}" if parent else stem
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            assert ext not in samples[-1][1], f"{path}: {key}.{ext} twice"
            samples[-1][1][ext] = tar.extractfile(m).read()
    return samples


def test_make_shards():
    work = fresh("make_shards")
    src = work / "photos"
    paths = make_images(src, 10, seed=13)
    paths += make_images(src / "sub", 3, seed=14)
    dotted = src / "sub" / "holiday.v2.png"  # WebDataset's key ends at the first dot: key sub/holiday_v2
    shutil.copy(paths[0], dotted)
    paths.append(dotted)
    (src / "notes.md").write_text("not an image")
    captions = {}
    for p in paths[::3]:
        captions[p] = f"a caption for {p.name}\n"
        p.with_name(p.name.rsplit(".", 1)[0] + ".txt").write_text(captions[p])

    def key_of(p):
        rel = p.relative_to(src).as_posix()
        parent, _, base = rel.rpartition("/")
        stem = base.rsplit(".", 1)[0].replace(".", "_")
        return f"{parent}/{stem}" if parent else stem

    by_key = {key_of(p): p for p in paths}
    assert len(by_key) == len(paths)
    order = sorted(by_key, key=lambda k: by_key[k].relative_to(src).as_posix().encode())

    pattern = make_shards(src, work / "shards" / "photos-%06d.tar", 4)
    n_shards = -(-len(paths) // 4)
    assert pattern == str(work / "shards" / f"photos-{{000000..{n_shards - 1:06d}}}.tar"), pattern
    shards = sorted((work / "shards").iterdir())
    assert [s.name for s in shards] == [f"photos-{i:06d}.tar" for i in range(n_shards)], [s.name for s in shards]
    got = []
    for i, shard in enumerate(shards):
        samples = read_shard(shard)
        want_n = min(4, len(paths) - 4 * i)
        assert len(samples) == want_n, f"{shard.name}: {len(samples)} samples, --per-shard 4 wants {want_n}"
        for key, members in samples:
            p = by_key[key]
            ext = p.suffix[1:].lower()
            want = {ext: p.read_bytes()} | ({"txt": captions[p].encode()} if p in captions else {})
            assert members == want, f"{shard.name} {key}: members {sorted(members)} != {sorted(want)}"
            got.append(key)
    assert got == order, f"samples not in sorted order:\n{got}\n{order}"
    # Deterministic: a second run writes the same bytes; .tar.gz patterns give gzipped shards.
    make_shards(src, work / "again" / "photos-%06d.tar", 4, "--quiet")
    for shard in shards:
        assert (work / "again" / shard.name).read_bytes() == shard.read_bytes(), f"{shard.name} differs"
    gz_pattern = make_shards(src, work / "gz" / "p-%02d.tar.gz", 5)
    gz = sorted((work / "gz").iterdir())
    assert sum(len(read_shard(g)) for g in gz) == len(paths) and len(gz) == -(-len(paths) // 5)
    # Collisions are refused before anything is written.
    clash = work / "clash"
    clash.mkdir()
    shutil.copy(paths[0], clash / "a.png")
    shutil.copy(paths[1], clash / "a.jpg")
    p = run([sys.executable, MAKE_SHARDS, clash, work / "clash-out" / "c-%d.tar"], expect=None)
    assert p.returncode != 0 and "a.jpg" in p.stderr and "a.png" in p.stderr, (p.returncode, p.stderr)
    assert not (work / "clash-out").exists() or not any((work / "clash-out").iterdir())

    # embed over the shards == embed over the directory, image by image (keys: SHARD/KEY vs the file's path).
    common = ["--model", FIX / "model", "--threads", "1", "--quiet", "--batch-size", "5"]
    run([BIN, "embed", "--input", src, "--output", work / "emb_dir", *common])
    run([BIN, "embed", "--input", pattern, "--output", work / "emb_tar", *common])
    run([BIN, "embed", "--input", gz_pattern, "--output", work / "emb_gz", *common])
    dir_rows = {key_of(src / k): v for k, v in embed_rows(work / "emb_dir").items()}
    assert set(dir_rows) == set(by_key), sorted(set(dir_rows) ^ set(by_key))
    for name in ("emb_tar", "emb_gz"):
        rows = embed_rows(work / name)
        stripped = {k.split("/", 1)[1]: v for k, v in rows.items()}
        assert len(stripped) == len(rows) and set(stripped) == set(by_key), sorted(set(stripped) ^ set(by_key))
        bad = [k for k in by_key if not np.allclose(stripped[k], dir_rows[k], rtol=0, atol=1e-6)]
        assert not bad, f"{name}: embeddings differ from the directory's for {bad}"
    print(f"{len(paths)} images, {len(captions)} captions: {n_shards} shards of <= 4 and {len(gz)} .tar.gz; "
          "embeddings equal to the directory's")


def main():
    global BIN, FIX, WORK
    BIN, FIX, WORK = str(Path(sys.argv[1]).resolve()), Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    t = time.time()
    globals()["test_" + sys.argv[4]]()
    print(f"{sys.argv[4]}: passed in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
