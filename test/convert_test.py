#!/usr/bin/env python3
"""Tests of the files scripts/convert_hf.py writes: modes, atomic writes, checksums.sha256, the lock.

    convert_test.py [WORK_DIR]

Builds a tiny seeded GroupViT checkpoint laid out as Hugging Face saves it (save_pretrained of the
model, a CLIP tokenizer and a CLIPImageProcessor), converts it by running convert_hf.py as a user
would (a subprocess, with the umask and limits set in the child) and checks the results; one case
drives convert_hf.convert in this process to stop it at each rename. WORK_DIR (default: a new
temporary directory, removed on success) holds the directories. Exit 0 = pass.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONVERTER = ROOT / "scripts" / "convert_hf.py"
MANIFEST = "checksums.sha256"
LOCK = ".groupvit.lock"
CANDIDATES = ["config.json", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "preprocessor_config.json"]
LINE = re.compile(r"^[0-9a-f]{64}  [^/\n]+$")
TEMPORARY = re.compile(r"\.tmp$")
FAKE_OWNER = "pid=4242 host=fakehost command=groupvit train"

checks = 0


def ok(what):
    global checks
    checks += 1
    print(f"ok: {what}", flush=True)


def fail(what):
    raise AssertionError(what)


# --- the checkpoint ------------------------------------------------------------------------------

def byte_tokens():
    """CLIP's byte-to-unicode table in vocabulary order (printable bytes first)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_source(hf: Path):
    import torch
    import transformers
    from transformers import CLIPImageProcessorPil, CLIPTokenizer, GroupViTConfig, GroupViTModel

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    merges = ["c a", "ca t</w>", "d o", "do g</w>"]
    tokens = byte_tokens()
    vocab = tokens + [t + "</w>" for t in tokens] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    config = GroupViTConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=len(vocab) - 2,
                         eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, depths=[1, 1],
                           num_group_tokens=[4, 0], num_output_groups=[4, 4], num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16, projection_intermediate_dim=32,
    )
    torch.manual_seed(5)
    model = GroupViTModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    model.save_pretrained(hf)
    ids = {t: i for i, t in enumerate(vocab)}
    CLIPTokenizer(vocab=ids, merges=[tuple(m.split()) for m in merges]).save_pretrained(hf)
    # transformers 5 writes only tokenizer.json; a hub snapshot also has the slow tokenizer's files.
    (hf / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
    (hf / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(hf)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- helpers -------------------------------------------------------------------------------------

def start(src, out, *extra, umask=0o022, fsize=None):
    def child():
        os.umask(umask)
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    args = [sys.executable, str(CONVERTER), str(src), str(out), *map(str, extra)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=child)
    p.args_text = " ".join(args)
    p.started = time.monotonic()
    return p


def finish(p, expect=0, timeout=300):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        fail(f"timed out: {p.args_text}\n{err}")
    p.elapsed = time.monotonic() - p.started
    if p.returncode != expect:
        fail(f"exit {p.returncode} (expected {expect}): {p.args_text}\nstdout:\n{out}\nstderr:\n{err}")
    if "Traceback" in err:
        fail(f"a traceback from {p.args_text}:\n{err}")
    return out, err


def run_concurrently(runs):
    """[(args, kwargs)] of convert(), as many at a time as there are CPUs; their (stdout, stderr)."""
    width = max(1, min(len(runs), len(os.sched_getaffinity(0))))
    results = []
    for i in range(0, len(runs), width):
        wave = []
        for args, kwargs in runs[i:i + width]:
            kwargs = dict(kwargs)
            expect = kwargs.pop("expect", 0)
            wave.append((start(*args, **kwargs), expect))
        results += [finish(p, expect) for p, expect in wave]
    return results


def convert(src, out, *extra, umask=0o022, expect=0, fsize=None):
    return finish(start(src, out, *extra, umask=umask, fsize=fsize), expect)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def snapshot(directory, skip_lock_content=False):
    """Every entry of the directory: mode, size, modification time and content hash."""
    state = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        content = None if (skip_lock_content and entry.name == LOCK) else sha256(entry.path)
        times = None if (skip_lock_content and entry.name == LOCK) else (st.st_mtime_ns, st.st_size)
        state[entry.name] = (stat.S_IMODE(st.st_mode), times, content)
    return state


def temporaries(directory):
    return [n for n in os.listdir(directory) if TEMPORARY.search(n)]


def manifest_lines(directory):
    return Path(directory, MANIFEST).read_text(encoding="utf-8").splitlines()


def manifest_entries(directory):
    entries = {}
    for line in manifest_lines(directory):
        entries.setdefault(line[66:], set()).add(line[:64])
    return entries


def sha256sum_check(directory):
    return subprocess.run(["sha256sum", "-c", MANIFEST], cwd=directory, capture_output=True, text=True)


def check_manifest(directory, expected_names, what):
    lines = manifest_lines(directory)
    bad = [line for line in lines if not LINE.match(line)]
    if bad:
        fail(f"{what}: lines not in sha256sum's format: {bad}")
    names = [line[66:] for line in lines]
    if names != sorted(names) or len(set(names)) != len(names):
        fail(f"{what}: manifest not sorted by name, one line a name: {names}")
    if set(names) != set(expected_names):
        fail(f"{what}: manifest lists {sorted(names)}, expected {sorted(expected_names)}")
    if MANIFEST in names or LOCK in names:
        fail(f"{what}: the manifest lists itself or the lock file")
    r = sha256sum_check(directory)
    if r.returncode != 0 or r.stdout.count(": OK\n") != len(names):
        fail(f"{what}: sha256sum -c failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    ok(f"{what}: checksums.sha256 is sorted, lists exactly {len(names)} files, `sha256sum -c` passes")


def check_modes(directory, expected, what, exceptions=None):
    exceptions = exceptions or {}
    wrong = {}
    for name in os.listdir(directory):
        want = exceptions.get(name, expected)
        if mode(Path(directory, name)) != want:
            wrong[name] = f"{mode(Path(directory, name)):04o} (expected {want:04o})"
    if wrong:
        fail(f"{what}: wrong modes: {wrong}")
    ok(f"{what}: every file has mode {expected:04o}" + (f" except {sorted(exceptions)} as they were" if exceptions else ""))


def check_lock_file(directory, what):
    text = Path(directory, LOCK).read_text()
    if not re.fullmatch(r"pid=\d+ host=\S+ command=convert_hf\.py\n", text):
        fail(f"{what}: lock file content {text!r}")
    ok(f"{what}: {LOCK} kept, holding {text.strip()!r}")


# --- cases ---------------------------------------------------------------------------------------

def case_subprocesses(work, src, state, expected, base):
    """Four conversions run concurrently as a user runs them: umask 022 and 077 into new
    directories, umask 077 in place over 0644 files, and one over an existing conversion whose
    writes fail half-way (RLIMIT_FSIZE)."""
    out022 = work / "umask022" / "nested" / "model"
    out077 = work / "umask077" / "nested" / "model"
    inplace = work / "inplace"
    shutil.copytree(src, inplace)
    for p in inplace.iterdir():
        os.chmod(p, 0o644)
    os.chmod(inplace / "preprocessor_config.json", 0o640)  # a mode no umask gives here: kept, not recomputed
    before = {p.name: sha256(p) for p in inplace.iterdir()}
    interrupted = work / "interrupted"
    shutil.copytree(base, interrupted)
    interrupted_before = snapshot(interrupted, skip_lock_content=True)
    limit = 64 << 10
    if (base / "model.safetensors").stat().st_size <= 2 * limit or (base / "config.json").stat().st_size >= limit:
        fail("the fixture's sizes do not suit the RLIMIT_FSIZE case")
    results = run_concurrently([
        ((src, out022), dict(umask=0o022)),
        ((src, out077), dict(umask=0o077)),
        ((inplace, inplace), dict(umask=0o077)),
        ((src, interrupted, "--dtype", "fp16"), dict(fsize=limit, expect=1)),
    ])
    err = results[3][1]

    for out, umask, file_mode, dir_mode in ((out022, "022", 0o644, 0o755), (out077, "077", 0o600, 0o700)):
        what = f"umask {umask}, new directory"
        check_modes(out, file_mode, what)
        for d in (out, out.parent):
            if mode(d) != dir_mode:
                fail(f"{what}: directory {d} has mode {mode(d):04o}, expected {dir_mode:04o}")
        ok(f"{what}: the directories it created have mode {dir_mode:04o}")
        check_manifest(out, expected, what)
        check_lock_file(out, what)
        if temporaries(out):
            fail(f"{what}: temporaries left: {temporaries(out)}")
        ok(f"{what}: no temporaries left")

    import torch
    from safetensors.torch import load_file

    written = load_file(str(out022 / "model.safetensors"))
    pt = torch.load(str(out022 / "groupvit_weights.pt"), map_location="cpu", weights_only=True)
    want = {k: v for k, v in state.items() if k != "text_model.embeddings.position_ids"}
    for name, tensors in (("model.safetensors", written), ("groupvit_weights.pt", pt)):
        if tensors.keys() != want.keys() or any(not torch.equal(tensors[k], want[k]) for k in want):
            fail(f"{name} does not hold the source's tensors")
    ok("both weight files hold exactly the source's tensors")
    for name in CANDIDATES:
        if (src / name).exists() and sha256(out022 / name) != sha256(src / name):
            fail(f"{name} is not a copy of the source's")
    ok("config, tokenizer and preprocessor files are copies of the source's")

    what = "umask 077, in place"
    new = {"groupvit_weights.pt", MANIFEST, LOCK}
    check_modes(inplace, 0o644, what, exceptions={"preprocessor_config.json": 0o640, **{n: 0o600 for n in new}})
    check_manifest(inplace, expected, what)
    if any(sha256(inplace / n) != d for n, d in before.items() if n != "model.safetensors"):
        fail(f"{what}: a copied file changed its contents")
    if temporaries(inplace):
        fail(f"{what}: temporaries left: {temporaries(inplace)}")
    ok(f"{what}: copied files unchanged, no temporaries left")

    what = "a write that fails half-way (RLIMIT_FSIZE 64 KiB)"
    if "groupvit_weights.pt" not in err or "cannot write" not in err:
        fail(f"{what}: the error does not name the file:\n{err}")
    ok(f"{what}: exit 1, no traceback: {err.strip().splitlines()[-1]}")
    if temporaries(interrupted):
        fail(f"{what}: temporaries left: {temporaries(interrupted)}")
    if snapshot(interrupted, skip_lock_content=True) != interrupted_before:
        fail(f"{what}: the directory changed")
    ok(f"{what}: no temporaries, every file as before")


def case_corruption(work, base):
    bad = work / "corrupt"
    shutil.copytree(base, bad)
    r = sha256sum_check(bad)
    if r.returncode != 0:
        fail(f"the copy does not pass sha256sum -c:\n{r.stdout}")
    path = bad / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    r = sha256sum_check(bad)
    if r.returncode == 0 or "model.safetensors: FAILED" not in r.stdout:
        fail(f"sha256sum -c does not catch a flipped byte:\n{r.stdout}{r.stderr}")
    ok("flipped bytes in model.safetensors: `sha256sum -c` fails on model.safetensors")


def case_lock_held(work, src, base):
    """A second writer while the lock is held (by this process, posing as groupvit train)."""
    locked = work / "locked"
    shutil.copytree(base, locked)
    fd = os.open(locked / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (FAKE_OWNER + "\n").encode(), 0)
        before = snapshot(locked)
        p = start(src, locked)
        _, err = finish(p, expect=1, timeout=60)  # it must not wait for the lock
        after = snapshot(locked)
    finally:
        os.close(fd)
    if FAKE_OWNER not in err or str(locked) not in err or "being written by another process" not in err:
        fail(f"the error does not name the directory and the holder:\n{err}")
    if not err.startswith("convert_hf.py: error: "):
        fail(f"unexpected message format:\n{err}")
    ok(f"lock held: exit 1 in {p.elapsed:.1f} s: {err.strip()}")
    if p.elapsed > 10:
        fail("the converter did not fail at once")
    if after != before:
        fail("lock held: the directory changed")
    ok("lock held: no file changed (the holder's line included)")

    shards = [os.open(locked / LOCK, os.O_RDWR) for _ in range(2)]  # a sharded run holds it shared
    try:
        for fd in shards:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        _, err = finish(start(src, locked), expect=1, timeout=60)
    finally:
        for fd in shards:
            os.close(fd)
    if "(the shards of a sharded run)" not in err:
        fail(f"lock held shared: the error does not say so:\n{err}")
    if snapshot(locked) != before:
        fail("lock held shared: the directory changed")
    ok("lock held shared by two shards: exit 1 naming the shards of a sharded run, no file changed")


def case_broken_config(work, src, base):
    """A source whose config.json is not JSON: nothing is created or changed."""
    broken = work / "broken_src"
    shutil.copytree(src, broken)
    (broken / "config.json").write_text('{"text_config": {"hidden_size": 3')
    missing = work / "never_created"
    _, err = convert(broken, missing, expect=1)
    if "config.json" not in err:
        fail(f"broken config: the error does not name config.json:\n{err}")
    if missing.exists():
        fail("broken config: the output directory was created")
    ok(f"broken config, new OUT: exit 1, no directory created: {err.strip()}")
    existing = work / "existing"
    shutil.copytree(base, existing)
    before = snapshot(existing, skip_lock_content=True)
    convert(broken, existing, expect=1)
    if snapshot(existing, skip_lock_content=True) != before or temporaries(existing):
        fail("broken config: the existing directory changed")
    ok("broken config, existing OUT: exit 1, no file changed, no temporaries")


def case_reconvert(work, src, base, expected):
    """A second conversion (fp16, in this process) over an existing directory with extra lines in
    its manifest, a stale temporary of a killed run and a replaced file of mode 0640."""
    import convert_hf

    again = work / "again"
    shutil.copytree(base, again)
    (again / "notes.txt").write_text("kept: listed in the old manifest and still there\n")
    with open(again / MANIFEST, "a") as f:
        f.write(f"{sha256(again / 'notes.txt')}  notes.txt\n")
        f.write(f"{'0' * 64}  gone.bin\n")
    os.chmod(again / "config.json", 0o640)
    stale = again / ".config.json.0123456789abcdef.tmp"
    stale.write_text("left by a killed run")
    old = manifest_entries(again)
    stale_line = "pid=999999 host=elsewhere command=groupvit train\n"  # a holder that has exited
    (again / LOCK).write_text(stale_line)
    convert_hf.convert(str(src), again, "fp16")

    what = "reconversion (fp16) over an old manifest"
    check_manifest(again, expected + ["notes.txt"], what)
    new = manifest_entries(again)
    if new["groupvit_weights.pt"] == old["groupvit_weights.pt"] or new["model.safetensors"] == old["model.safetensors"]:
        fail(f"{what}: the weights' checksums did not change")
    if new["config.json"] != old["config.json"]:
        fail(f"{what}: config.json's checksum changed")
    ok(f"{what}: notes.txt's line kept, gone.bin's dropped, the weights' lines replaced")
    if mode(again / "config.json") != 0o640:
        fail(f"{what}: config.json has mode {mode(again / 'config.json'):04o}, expected its old 0640")
    ok(f"{what}: the replaced config.json kept its mode 0640 under umask 022")
    if stale.exists() or temporaries(again):
        fail(f"{what}: temporaries left: {temporaries(again)}")
    ok(f"{what}: the stale temporary of a killed run was removed")
    line = (again / LOCK).read_text()
    if line == stale_line or line != f"pid={os.getpid()} host={socket.gethostname()} command=convert_hf.py\n":
        fail(f"{what}: the lock file holds {line!r} (before: {stale_line!r})")
    ok(f"{what}: the lock file's line of a finished run did not stop it; it now names this process")


def case_crash_during_publish(work, src, base, expected):
    """Stops convert_hf.convert at each os.replace: the manifest then still vouches for every file."""
    import convert_hf

    real_replace = os.replace
    points = len(expected) + 2  # the manifest with old and new lines, each file, the final manifest
    for stop in range(points + 1):
        d = work / f"crash{stop}"
        shutil.copytree(base, d)
        calls = []

        def replace(a, b, *args, **kwargs):
            if len(calls) == stop:
                raise OSError(5, "simulated power cut")
            calls.append(b)
            return real_replace(a, b, *args, **kwargs)

        os.replace = replace
        try:
            convert_hf.convert(str(src), d, "bf16")
            completed = True
        except OSError:
            completed = False
        finally:
            os.replace = real_replace
        if completed != (stop == points):
            fail(f"crash at rename {stop}: completed={completed}, {len(calls)} renames")
        entries = manifest_entries(d)
        for name in expected:
            if name not in entries or sha256(d / name) not in entries[name]:
                fail(f"crash at rename {stop}: {name} does not match any of its lines in {MANIFEST}")
        if temporaries(d):
            fail(f"crash at rename {stop}: temporaries left: {temporaries(d)}")
        if stop == points:
            check_manifest(d, expected, "in-process conversion")
    ok(f"a crash before each of the {points} renames leaves every file matching a line of its name, no temporaries")


def main():
    t0 = time.monotonic()
    if shutil.which("sha256sum") is None:
        fail("sha256sum (coreutils) is needed")
    keep = len(sys.argv) > 1
    work = Path(sys.argv[1]) if keep else Path(tempfile.mkdtemp(prefix="convert_test."))
    if keep:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    os.umask(0o022)
    src = work / "hf"
    state = build_source(src)
    expected = sorted(["groupvit_weights.pt", "model.safetensors"] + [n for n in CANDIDATES if (src / n).exists()])
    ok(f"tiny checkpoint in {src}: {sorted(os.listdir(src))} ({time.monotonic() - t0:.1f} s)")

    def timed(case, *args):
        t = time.monotonic()
        result = case(*args)
        print(f"   {case.__name__}: {time.monotonic() - t:.1f} s", flush=True)
        return result

    # A converted directory to start from, made in this process (the subprocesses each spend
    # seconds importing torch and transformers).
    sys.path.insert(0, str(CONVERTER.parent))
    import convert_hf

    base = work / "base"
    convert_hf.convert(str(src), base, "fp32")
    check_manifest(base, expected, "in-process conversion")

    timed(case_subprocesses, work, src, state, expected, base)
    timed(case_corruption, work, base)
    timed(case_lock_held, work, src, base)
    timed(case_broken_config, work, src, base)
    timed(case_reconvert, work, src, base, expected)
    timed(case_crash_during_publish, work, src, base, expected)
    if not keep:
        shutil.rmtree(work)
    print(f"convert_test: {checks} checks passed in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
