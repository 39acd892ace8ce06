#!/usr/bin/env python3
"""Tests of --model resolution from the local Hugging Face cache, without network.

    test_hub_resolve.py BINARY [--cli] [-v] [unittest options]

BINARY is either resolve_main (the stand-alone driver: `resolve_main SPEC [--revision REV] --json`)
or the groupvit CLI once resolve_model is integrated (`groupvit info --model SPEC [--revision REV]
--json`, which prints model_dir); --cli selects the latter, as does a BINARY named groupvit.

Hub caches are built in a temporary directory exactly as huggingface_hub lays them out
(models--ORG--NAME/blobs/<etag>, snapshots/<commit>/<file> as relative links into ../../blobs,
refs/<name> holding the commit without a newline) around a tiny seeded GroupViT checkpoint
(test/convert_test.py's build_source: save_pretrained plus a CLIP tokenizer and image processor).
huggingface_hub itself (scan_cache_dir, snapshot_download(local_files_only=True), constants) is run
against the same caches and environments as a cross-check of the layout and of the cache's location.
HOME points into the temporary directory: the user's real caches are never read or written.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent


def source_dir() -> Path:
    """The groupvit sources: $GROUPVIT_SOURCE_DIR, this file's project (when it sits in test/), /work/main."""
    for candidate in (os.environ.get("GROUPVIT_SOURCE_DIR"), HERE.parent, Path("/work/main")):
        if candidate and (Path(candidate) / "scripts" / "convert_hf.py").is_file():
            return Path(candidate)
    raise SystemExit("cannot find the groupvit sources (set GROUPVIT_SOURCE_DIR)")


ROOT = source_dir()
sys.path.insert(0, str(ROOT / "test"))
from convert_test import build_source  # noqa: E402  the project's tiny seeded checkpoint

BINARY = None
CLI_MODE = False
ORG_NAME = "nvidia/groupvit-tiny"
# Variables that select caches or the converter: none of the caller's may leak into a case.
CLEARED = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "GROUPVIT_CACHE",
           "GROUPVIT_CONVERTER", "GROUPVIT_PYTHON", "HF_ENDPOINT", "HF_TOKEN")


def commit_of(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Checkpoint:
    """The source files of one checkpoint, as bytes, and its state dict."""

    def __init__(self, work: Path):
        import torch

        src = work / "checkpoint"
        self.state = build_source(src)
        self.files = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
        assert "model.safetensors" in self.files and "config.json" in self.files, sorted(self.files)
        # An old-style checkpoint: only the pickle, as torch.save of the state dict.
        bin_path = work / "pytorch_model.bin"
        torch.save(self.state, bin_path)
        self.bin_files = {k: v for k, v in self.files.items() if k != "model.safetensors"}
        self.bin_files["pytorch_model.bin"] = bin_path.read_bytes()


def add_snapshot(cache: Path, repo_id: str, commit: str, files: dict, refs=(), mtime=None) -> Path:
    """A snapshot in huggingface_hub's layout: content-addressed blobs (sha256 for LFS files, the git
    blob sha1 for the others, as the hub's etags are) and relative links to them."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        lfs = name.endswith((".safetensors", ".bin"))
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        blob = repo / "blobs" / etag
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.join("..", "..", "blobs", etag))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    if mtime is not None:
        os.utime(snapshot, (mtime, mtime))
    return snapshot


class HubResolveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="hub-resolve-"))
        cls.ckpt = Checkpoint(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("KEEP_TMP"):
            print(f"kept {cls.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.work = Path(tempfile.mkdtemp(prefix=self._testMethodName + "-", dir=self.tmp))
        self.home = self.work / "home"
        self.home.mkdir()

    # --- running the binary ----------------------------------------------------------------------

    def env(self, **overrides):
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        env["HOME"] = str(self.home)
        env["HF_HUB_OFFLINE"] = "1"  # for the huggingface_hub cross-checks; the binary never connects
        env.update({k: str(v) for k, v in overrides.items() if v is not None})
        return env

    def run_binary(self, spec, revision=None, env=None, cwd=None):
        if CLI_MODE:
            args = [BINARY, "info", "--model", spec, "--json"]
        else:
            args = [BINARY, spec, "--json"]
        if revision is not None:
            args += ["--revision", revision]
        return subprocess.run(args, env=env or self.env(), cwd=cwd or self.work, capture_output=True, text=True,
                              timeout=600)

    def resolve(self, spec, revision=None, env=None, cwd=None):
        """(model_dir, stderr) of a run that must succeed."""
        p = self.run_binary(spec, revision, env, cwd)
        self.assertEqual(p.returncode, 0, f"{spec} --revision {revision}: exit {p.returncode}\n{p.stderr}")
        # One JSON document on stdout: nothing of the converter's output may get there.
        out = json.loads(p.stdout)
        return out["model_dir"], p.stderr

    def refuse(self, spec, revision=None, env=None, cwd=None):
        """The error message of a run that must fail with exit 1."""
        p = self.run_binary(spec, revision, env, cwd)
        self.assertEqual(p.returncode, 1, f"{spec}: expected exit 1, got {p.returncode}\n{p.stdout}\n{p.stderr}")
        self.assertEqual(p.stdout, "")
        self.assertNotIn("Traceback", p.stderr)
        # One line, the last, as every groupvit error (test/cli_test.py's errors case checks the same);
        # notes and a failing converter's own messages may come before it.
        last = p.stderr.rstrip("\n").split("\n")[-1]
        self.assertTrue(last.startswith(("error: ", "groupvit: error: ")), p.stderr)
        self.assertEqual(p.stderr.count("error: "), 1, p.stderr)
        return last

    def hf(self, code, env):
        """What huggingface_hub itself says, run in a fresh interpreter (its constants are read at import)."""
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.strip()

    def hf_snapshot(self, repo_id, revision, env):
        return self.hf("import sys\nfrom huggingface_hub import snapshot_download\n"
                       f"print(snapshot_download({repo_id!r}, revision={revision!r}, local_files_only=True))", env)

    # --- the hub cache: where, and which snapshot ---------------------------------------------------

    def test_safetensors_via_hf_hub_cache(self):
        cache = self.work / "hub"
        commit = commit_of("one")
        snap = add_snapshot(cache, ORG_NAME, commit, self.ckpt.files, refs=["main"])
        env = self.env(HF_HUB_CACHE=cache)
        got, err = self.resolve(ORG_NAME, env=env)
        self.assertEqual(got, str(snap))
        self.assertNotIn("converting", err)
        self.assertEqual(self.hf_snapshot(ORG_NAME, None, env), got)
        # The cache as huggingface_hub's own scanner sees it: one repo, one revision, no warnings.
        report = json.loads(self.hf(
            "import json\nfrom huggingface_hub import scan_cache_dir\ni = scan_cache_dir()\n"
            "print(json.dumps({'warnings': [str(w) for w in i.warnings], 'repos': [[r.repo_id, "
            "[x.commit_hash for x in r.revisions], sorted(f.file_name for x in r.revisions for f in x.files)] "
            "for r in i.repos]}))", env))
        self.assertEqual(report["warnings"], [])
        self.assertEqual(report["repos"], [[ORG_NAME, [commit], sorted(self.ckpt.files)]])

    def test_via_hf_home_and_precedence(self):
        # One cache per variable, each with its own commit: the one chosen tells which variable won.
        places = {
            "HF_HUB_CACHE": self.work / "a",
            "HUGGINGFACE_HUB_CACHE": self.work / "b",
            "HF_HOME": self.work / "c" / "hub",
            "XDG_CACHE_HOME": self.work / "d" / "huggingface" / "hub",
            "HOME": self.home / ".cache" / "huggingface" / "hub",
        }
        values = {"HF_HUB_CACHE": self.work / "a", "HUGGINGFACE_HUB_CACHE": self.work / "b",
                  "HF_HOME": self.work / "c", "XDG_CACHE_HOME": self.work / "d"}
        snaps = {var: add_snapshot(cache, ORG_NAME, commit_of(var), self.ckpt.files, refs=["main"])
                 for var, cache in places.items()}
        order = list(places)
        for i, winner in enumerate(order):
            env = self.env(**{var: values[var] for var in order[i:] if var != "HOME"})
            got, _ = self.resolve(ORG_NAME, env=env)
            self.assertEqual(got, str(snaps[winner]), f"expected the cache of {winner}")
            self.assertEqual(self.hf("from huggingface_hub import constants; print(constants.HF_HUB_CACHE)", env),
                             str(places[winner]))
            self.assertEqual(self.hf_snapshot(ORG_NAME, None, env), got)
        # An empty variable counts as unset (huggingface_hub would take "" as the current directory).
        got, _ = self.resolve(ORG_NAME, env=self.env(HF_HUB_CACHE="", HF_HOME=values["HF_HOME"]))
        self.assertEqual(got, str(snaps["HF_HOME"]))

    def test_cache_path_expansion(self):
        # huggingface_hub passes each value through expanduser and expandvars.
        snap = add_snapshot(self.home / "hubs" / "x", ORG_NAME, commit_of("x"), self.ckpt.files, refs=["main"])
        env = self.env(HF_HUB_CACHE="~/hubs/$SUBDIR", SUBDIR="x")
        self.assertEqual(self.hf("from huggingface_hub import constants; print(constants.HF_HUB_CACHE)", env),
                         str(self.home / "hubs" / "x"))
        self.assertEqual(self.resolve(ORG_NAME, env=env)[0], str(snap))
        snap = add_snapshot(self.home / "h" / "hub", ORG_NAME, commit_of("y"), self.ckpt.files, refs=["main"])
        env = self.env(HF_HOME="${HOME}/h")
        self.assertEqual(self.resolve(ORG_NAME, env=env)[0], str(snap))

    def test_name_without_org(self):
        cache = self.work / "hub"
        snap = add_snapshot(cache, "groupvit-tiny", commit_of("noorg"), self.ckpt.files, refs=["main"])
        self.assertTrue(str(snap).startswith(str(cache / "models--groupvit-tiny")))
        self.assertEqual(self.resolve("groupvit-tiny", env=self.env(HF_HUB_CACHE=cache))[0], str(snap))

    def test_revision_by_ref_and_commit(self):
        cache = self.work / "hub"
        old, new = "a" + commit_of("old")[1:], "b" + commit_of("new")[1:]  # no common prefix
        snap_old = add_snapshot(cache, ORG_NAME, old, self.ckpt.files, refs=["v1.0", "refs/pr/3"])
        snap_new = add_snapshot(cache, ORG_NAME, new, self.ckpt.files, refs=["main"])
        env = self.env(HF_HUB_CACHE=cache)
        self.assertEqual(self.resolve(ORG_NAME, env=env)[0], str(snap_new))
        for revision, expected in [("main", snap_new), ("v1.0", snap_old), ("refs/pr/3", snap_old), (old, snap_old),
                                   (old[:7], snap_old), (old[:4], snap_old), (new[:10].upper(), snap_new)]:
            self.assertEqual(self.resolve(ORG_NAME, revision, env=env)[0], str(expected), revision)
            if revision in ("main", "v1.0", "refs/pr/3", old):  # what huggingface_hub resolves offline too
                self.assertEqual(self.hf_snapshot(ORG_NAME, revision, env), str(expected))
        err = self.refuse(ORG_NAME, "v2.0", env=env)
        for piece in ["v2.0", str(cache / "models--nvidia--groupvit-tiny"), "refs/pr/3", "v1.0", old[:12], new[:12]]:
            self.assertIn(piece, err)
        self.assertIn("no ref or snapshot matches", self.refuse(ORG_NAME, "abc", env=env))  # too short a prefix
        self.assertIn("is not a revision", self.refuse(ORG_NAME, "../../x", env=env))
        # Two commits sharing a prefix: ambiguous, both named.
        twin = old[:6] + "f" * 34
        add_snapshot(cache, ORG_NAME, twin, self.ckpt.files)
        err = self.refuse(ORG_NAME, old[:6], env=env)
        self.assertIn("ambiguous", err)
        self.assertIn(old, err)
        self.assertIn(twin, err)
        self.assertEqual(self.resolve(ORG_NAME, old[:7], env=env)[0], str(snap_old))

    def test_newest_snapshot_without_refs_main(self):
        cache = self.work / "hub"
        now = time.time()
        a = add_snapshot(cache, ORG_NAME, commit_of("a"), self.ckpt.files)
        b = add_snapshot(cache, ORG_NAME, commit_of("b"), self.ckpt.files)
        # The smaller name is the newer one: an order by name would pick the other.
        newer, older = sorted([a, b], key=lambda p: p.name)
        os.utime(older, (now - 3600, now - 3600))
        os.utime(newer, (now - 60, now - 60))
        env = self.env(HF_HUB_CACHE=cache)
        got, err = self.resolve(ORG_NAME, env=env)
        self.assertEqual(got, str(newer))
        self.assertIn("no refs/main", err)
        self.assertIn(newer.name, err)
        # An explicit --revision main does not fall back.
        self.assertIn("main", self.refuse(ORG_NAME, "main", env=env))
        self.assertEqual(self.resolve(ORG_NAME, older.name[:8], env=env)[0], str(older))

    def test_directory_wins_and_stays_unchanged(self):
        cache = self.work / "hub"
        add_snapshot(cache, ORG_NAME, commit_of("cached"), self.ckpt.files, refs=["main"])
        local = self.work / ORG_NAME
        local.mkdir(parents=True)
        for name, data in self.ckpt.files.items():
            (local / name).write_bytes(data)
        env = self.env(HF_HUB_CACHE=cache)
        if not CLI_MODE:  # ".." is a directory, not a refused id (the CLI would go on to load it)
            self.assertEqual(self.resolve("..", env=env)[0], "..")
        # A relative directory of the id's name is taken as the directory, given as written.
        self.assertEqual(self.resolve(ORG_NAME, env=env, cwd=self.work)[0], ORG_NAME)
        self.assertEqual(self.resolve(str(local), env=env)[0], str(local))
        self.assertIn("is a directory", self.refuse(str(local), "main", env=env))

    # --- pytorch_model.bin: converted once, then reused ---------------------------------------------

    def converted_equal_checkpoint(self, out: Path):
        import torch
        from safetensors.torch import load_file

        tensors = load_file(str(out / "model.safetensors"))
        expected = {k: v for k, v in self.ckpt.state.items() if k != "text_model.embeddings.position_ids"}
        self.assertEqual(sorted(tensors), sorted(expected))
        for name, tensor in expected.items():
            self.assertTrue(torch.equal(tensors[name], tensor), name)
        archive = torch.load(str(out / "groupvit_weights.pt"), map_location="cpu", weights_only=True)
        self.assertTrue(all(torch.equal(archive[k], v) for k, v in expected.items()))
        listed = {line[66:] for line in (out / "checksums.sha256").read_text().splitlines()}
        self.assertTrue({"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= listed, listed)

    def test_pytorch_model_bin_converted_once(self):
        cache, gv_cache = self.work / "hub", self.work / "gv-cache"
        commit = commit_of("bin")
        snap = add_snapshot(cache, ORG_NAME, commit, self.ckpt.bin_files, refs=["main"])
        # The compiled-in defaults: the sources' scripts/convert_hf.py run by their .venv/bin/python.
        env = self.env(HF_HUB_CACHE=cache, GROUPVIT_CACHE=gv_cache)
        got, err = self.resolve(ORG_NAME, env=env)
        out = gv_cache / "models--nvidia--groupvit-tiny" / commit
        self.assertEqual(got, str(out))
        self.assertEqual(err.count("note: converting"), 1, err)
        self.assertIn(str(out), err)
        self.converted_equal_checkpoint(out)
        self.assertFalse((snap / "model.safetensors").exists(), "the hub cache must not be written")
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        got, err = self.resolve(ORG_NAME, env=env)
        self.assertEqual(got, str(out))
        self.assertNotIn("converting", err)
        self.assertEqual({p.name: p.stat().st_mtime_ns for p in out.iterdir()}, before)
        # A conversion that lost a file its manifest lists (killed mid-publish) is done again.
        (out / "model.safetensors").unlink()
        got, err = self.resolve(ORG_NAME, env=env)
        self.assertIn("converting", err)
        self.converted_equal_checkpoint(out)

    def test_parallel_runs_convert_once(self):
        # A Slurm array started on a fresh id: one converts, the others wait and reuse. The
        # groupvit cache is XDG_CACHE_HOME/groupvit here (no GROUPVIT_CACHE).
        cache, xdg = self.work / "hub", self.work / "xdg"
        commit = commit_of("parallel")
        add_snapshot(cache, ORG_NAME, commit, self.ckpt.bin_files, refs=["main"])
        env = self.env(HF_HUB_CACHE=cache, XDG_CACHE_HOME=xdg, GROUPVIT_PYTHON=sys.executable)
        args = [BINARY, "info", "--model", ORG_NAME, "--json"] if CLI_MODE else [BINARY, ORG_NAME, "--json"]
        procs = [subprocess.Popen(args, env=env, cwd=self.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(3)]
        results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
        out = xdg / "groupvit" / "models--nvidia--groupvit-tiny" / commit
        for stdout, stderr, rc in results:
            self.assertEqual(rc, 0, stderr)
            self.assertEqual(json.loads(stdout)["model_dir"], str(out))
        self.assertEqual(sum(stderr.count("note: converting") for _, stderr, _ in results), 1,
                         [stderr for _, stderr, _ in results])
        self.converted_equal_checkpoint(out)

    def test_conversion_failures(self):
        cache = self.work / "hub"
        add_snapshot(cache, ORG_NAME, commit_of("fail"), self.ckpt.bin_files, refs=["main"])
        base = dict(HF_HUB_CACHE=cache, GROUPVIT_CACHE=self.work / "gv")
        err = self.refuse(ORG_NAME, env=self.env(**base, GROUPVIT_PYTHON="/bin/false"))
        self.assertIn("converting", err)
        self.assertIn("exit status 1", err)
        killer = self.work / "killed-python"
        killer.write_text("#!/bin/sh\nkill -9 $$\n")
        killer.chmod(0o755)
        self.assertIn("killed by signal 9", self.refuse(ORG_NAME, env=self.env(**base, GROUPVIT_PYTHON=killer)))
        err = self.refuse(ORG_NAME, env=self.env(**base, GROUPVIT_PYTHON=self.work / "no-such-python"))
        self.assertIn("cannot run", err)
        self.assertIn("GROUPVIT_PYTHON", err)
        err = self.refuse(ORG_NAME, env=self.env(**base, GROUPVIT_CONVERTER=self.work / "no-such-script.py"))
        self.assertIn("no-such-script.py does not exist", err)
        # A path with shell syntax stays one argument (no shell): the script runs and fails cleanly.
        odd = self.work / "gv; touch INJECTED"
        err = self.refuse(ORG_NAME, env=self.env(HF_HUB_CACHE=cache, GROUPVIT_CACHE=odd, GROUPVIT_PYTHON="/bin/false"))
        self.assertFalse((self.work / "INJECTED").exists())
        # An unwritable groupvit cache is named.
        ro = self.work / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        if os.geteuid() != 0:  # root writes anyway
            self.assertIn("GROUPVIT_CACHE", self.refuse(ORG_NAME, env=self.env(HF_HUB_CACHE=cache,
                                                                                  GROUPVIT_CACHE=ro / "x")))

    # --- what is refused ----------------------------------------------------------------------------

    def test_missing_model_names_every_place(self):
        cache = self.work / "hub"
        cache.mkdir()
        err = self.refuse("nvidia/groupvit-gcc-yfcc", env=self.env(HF_HUB_CACHE=cache))
        for piece in ["'nvidia/groupvit-gcc-yfcc'", "does not exist", str(cache), "HF_HUB_CACHE",
                      str(cache / "models--nvidia--groupvit-gcc-yfcc"), "revision: main",
                      "hf download nvidia/groupvit-gcc-yfcc", "huggingface-cli download nvidia/groupvit-gcc-yfcc",
                      "scripts/convert_hf.py"]:
            self.assertIn(piece, err)
        err = self.refuse("nvidia/groupvit-gcc-yfcc", "v3", env=self.env())  # the default cache, under HOME
        self.assertIn(str(self.home / ".cache" / "huggingface" / "hub"), err)
        self.assertIn("revision: v3", err)

    def test_invalid_ids_refused(self):
        cache = self.work / "hub"
        add_snapshot(cache, ORG_NAME, commit_of("v"), self.ckpt.files, refs=["main"])
        env = self.env(HF_HUB_CACHE=cache)
        for spec in ["../etc", "..x", "/nonexistent/dir", "a/b/c", "x-", "x.", "org--a/b", "a..b", "x.git",
                     "a b", "org/", "/x", "models--nvidia--groupvit-tiny/../x", "café"]:
            err = self.refuse(spec, env=env)
            self.assertIn("not a Hugging Face id", err, spec)
            self.assertIn("does not exist", err, spec)  # what test/cli_test.py's errors case expects
        (self.work / "afile").write_text("x")  # a valid id too: looked up, and the file named
        self.assertIn("the directory 'afile' (is a file, not a directory)", self.refuse("afile", env=env))
        (self.work / "bad..name").write_text("x")
        self.assertIn("'bad..name' is a file, not a directory, and it is not a Hugging Face id",
                      self.refuse("bad..name", env=env))

    def test_damaged_caches(self):
        cache = self.work / "hub"
        env = self.env(HF_HUB_CACHE=cache)
        # refs/main naming a commit that has no snapshot.
        add_snapshot(cache, "o/dangling-ref", commit_of("s"), self.ckpt.files)
        (cache / "models--o--dangling-ref" / "refs").mkdir()
        (cache / "models--o--dangling-ref" / "refs" / "main").write_text(commit_of("gone"))
        self.assertIn("refs/main names commit " + commit_of("gone"), self.refuse("o/dangling-ref", env=env))
        # A ref whose content is a path, not a commit: never followed.
        add_snapshot(cache, "o/evil-ref", commit_of("e"), self.ckpt.files)
        (cache / "models--o--evil-ref" / "refs").mkdir()
        (cache / "models--o--evil-ref" / "refs" / "main").write_text("../../../../etc")
        self.assertIn("does not hold a commit hash", self.refuse("o/evil-ref", env=env))
        # Only config.json was downloaded (hf download ID config.json).
        add_snapshot(cache, "o/config-only", commit_of("c"), {"config.json": self.ckpt.files["config.json"]},
                     refs=["main"])
        self.assertIn("has no weights", self.refuse("o/config-only", env=env))
        # model.safetensors links to a blob that is not there (an interrupted or pruned download).
        snap = add_snapshot(cache, "o/lost-blob", commit_of("l"), self.ckpt.files, refs=["main"])
        os.unlink(os.path.join(snap, os.readlink(snap / "model.safetensors")))
        self.assertIn("missing blob", self.refuse("o/lost-blob", env=env))
        # A hub cache directory but no snapshot at all.
        (cache / "models--o--empty" / "refs").mkdir(parents=True)
        self.assertIn("no refs/main and no snapshots", self.refuse("o/empty", env=env))


def main():
    global BINARY, CLI_MODE
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        raise SystemExit(__doc__)
    BINARY = str(Path(args.pop(0)).resolve())
    CLI_MODE = "--cli" in args or Path(BINARY).name == "groupvit"
    args = [a for a in args if a != "--cli"]
    unittest.main(argv=[sys.argv[0]] + args)


if __name__ == "__main__":
    main()
