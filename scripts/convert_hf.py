#!/usr/bin/env python3
"""Convert a Hugging Face GroupViT checkpoint into a groupvit model directory.

    scripts/convert_hf.py SRC OUT_DIR [--dtype fp32|fp16|bf16] [--json]

SRC is a local Hugging Face directory (config.json with pytorch_model.bin or
model.safetensors, plus tokenizer and preprocessor files) or a hub id such as
nvidia/groupvit-gcc-yfcc (downloaded only when the hub is reachable). OUT_DIR may be SRC
itself (conversion in place).

OUT_DIR receives:
  groupvit_weights.pt      torch.save of a plain {name: tensor} dict, loadable by LibTorch
                           (torch::pickle_load) and by torch.load
  model.safetensors        the same tensors; what groupvit::load_model reads (fastest)
  config.json              the source's config
  tokenizer / preprocessor files found in SRC; where SRC has no vocabulary, the
  OpenAI/open_clip bpe_simple_vocab_16e6.txt.gz from the open-clip-torch package
  checksums.sha256         the SHA-256 of every file above, in sha256sum's format
  .groupvit.lock           the directory lock (below); never listed, never deleted

Every tensor is checked against the model that config.json describes (names, shapes,
floating dtypes) before anything is written, and both weight files are read back and
compared before they replace anything.

Permissions: a new file gets what a plain write would give it, 0666 & ~umask (0644 under
umask 022, 0600 under 077); a file that is replaced keeps its permission bits (converting in
place under umask 077 leaves the source's 0644 files readable by others). Directories the
converter creates get 0777 & ~umask.

Atomic writes: each file is written to a unique temporary in its own directory (created with
O_CREAT | O_EXCL), fsynced, renamed over the target and the directory fsynced, so a crash or
power cut leaves the old file or the new one, never a mixture; on an error the temporary is
removed (and the next run removes the ones a killed converter left behind).

checksums.sha256: one line "<64 lowercase hex>  <file name>" per file, sorted by name, names
plain names in OUT_DIR; `sha256sum -c checksums.sha256` inside OUT_DIR checks it by hand, and
groupvit's loader verifies the files against it. The hashes are of the bytes written. Lines of
an older manifest for other files that still exist are kept; lines of files that are gone are
dropped. The manifest is written last, in two steps that keep it true at every instant (a file
is valid when it matches any line of its name): first it lists the old and the new hash of
every file being replaced, then the new files are renamed into place, then it is rewritten with
only the current lines. It does not list itself or the lock file.

Lock: while it converts, the converter holds an exclusive flock on OUT_DIR/.groupvit.lock
(created 0666 & ~umask when missing) holding one line "pid=PID host=HOST command=convert_hf.py".
groupvit train and segment take the same lock, so two writers of one directory exclude each
other: the second fails at once (exit code 1) naming the process that holds it.
"""
import argparse
import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import sys
import time
from pathlib import Path

WEIGHTS_FILE = "groupvit_weights.pt"
SAFETENSORS_FILE = "model.safetensors"
TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
PREPROCESSOR_FILES = ["preprocessor_config.json"]
MANIFEST_FILE = "checksums.sha256"
LOCK_FILE = ".groupvit.lock"
# Present in older checkpoints; the reference regenerates it (non-persistent buffer).
IGNORED_KEYS = {"text_model.embeddings.position_ids"}
PROG = "convert_hf.py"
# The names of this script's temporaries: ".<target name>.<16 hex digits>.tmp".
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{16}\.tmp$")
MANIFEST_LINE = re.compile(r"^(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")


class ConversionError(Exception):
    pass


# --- files: modes, atomic writes, the manifest, the lock ---------------------------------------

_umask = None


def process_umask() -> int:
    """The process's umask, read once (at start-up, before any thread exists)."""
    global _umask
    if _umask is None:
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _umask = int(line.split()[1], 8)
                        break
        except (OSError, ValueError, IndexError):
            pass
        if _umask is None:  # no /proc (or an old kernel): the classic read, which sets it back at once
            _umask = os.umask(0)
            os.umask(_umask)
    return _umask


def new_file_mode() -> int:
    return 0o666 & ~process_umask()


def target_mode(path: Path) -> int:
    """The permission bits a write of `path` gives: those of the file it replaces, else a new file's."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return new_file_mode()
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else new_file_mode()


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # some file systems cannot sync a directory;
            raise                                             # the rename itself has happened
    finally:
        os.close(fd)


def make_directories(directory: Path) -> None:
    """os.makedirs (0777 & ~umask), with each new directory entry synced into its parent."""
    created = []
    d = directory.absolute()
    while not d.exists() and d != d.parent:
        created.append(d)
        d = d.parent
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ConversionError(f"{directory}: cannot create the directory: {exc.strerror or exc}") from None
    if not directory.is_dir():
        raise ConversionError(f"{directory}: not a directory")
    for d in reversed(created):
        fsync_directory(d.parent)


class HashingWriter:
    """A binary file object that hashes what goes through it: the manifest gets the bytes written."""

    def __init__(self, file):
        self._file = file
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        self._hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class StagedFile:
    """A file written to a temporary next to its target, fsynced and hashed; commit() renames it."""

    def __init__(self, path: Path, write):
        """write(f) writes the contents to the binary file object f."""
        self.path = Path(path)
        self.tmp = None
        mode = target_mode(self.path)
        fd = None
        for _ in range(100):
            tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise ConversionError(f"{self.path}: cannot create a temporary file: {exc.strerror or exc}") from None
        if fd is None:
            raise ConversionError(f"{self.path}: cannot create a unique temporary file")
        self.tmp = tmp
        try:
            os.fchmod(fd, mode)  # the kernel masks O_CREAT's mode with the umask; a replaced file's may be wider
            with os.fdopen(fd, "wb") as f:
                fd = None
                writer = HashingWriter(f)
                write(writer)
                f.flush()
                os.fsync(f.fileno())
            self.sha256 = writer.hexdigest()
            self.size = writer.size
        except BaseException as exc:
            if fd is not None:
                os.close(fd)
            self.discard()
            if isinstance(exc, Exception) and not isinstance(exc, ConversionError):
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split("\n")[0]
                raise ConversionError(f"{self.path}: cannot write: {why}") from None
            raise

    def commit(self) -> None:
        os.replace(self.tmp, self.path)
        self.tmp = None

    def discard(self) -> None:
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            self.tmp = None


def atomic_write(path: Path, write) -> str:
    """Replaces `path` atomically with what write(f) writes to a binary file object; returns its SHA-256."""
    staged = StagedFile(path, write)
    try:
        staged.commit()
    finally:
        staged.discard()
    fsync_directory(Path(path).parent)
    return staged.sha256


def remove_stale_temporaries(directory: Path) -> None:
    """Temporaries of a killed writer; safe to remove while the directory's lock is held."""
    for entry in os.scandir(directory):
        if TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            print(f"{PROG}: removed {entry.path}, left behind by an interrupted write", file=sys.stderr)


def read_manifest(directory: Path) -> set:
    """The (name, digest) lines of directory/checksums.sha256; none when it is missing."""
    path = directory / MANIFEST_FILE
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read: {exc.strerror or exc}") from None
    entries = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        m = MANIFEST_LINE.match(line)
        if m is None or "/" in m["name"] or m["name"].startswith("\\"):
            print(f"{PROG}: warning: {path}:{number}: not a sha256sum line, dropped: {line[:120]}", file=sys.stderr)
            continue
        entries.add((m["name"], m["digest"].lower()))
    return entries


def write_manifest(directory: Path, entries: set) -> None:
    text = "".join(f"{digest}  {name}\n" for name, digest in sorted(entries))
    atomic_write(directory / MANIFEST_FILE, lambda f: f.write(text.encode("utf-8")))


def sha256_of_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish(directory: Path, staged: list) -> None:
    """Renames staged files (all in `directory`) into place, keeping checksums.sha256 true throughout."""
    old = {(n, d) for n, d in read_manifest(directory)
           if n not in (MANIFEST_FILE, LOCK_FILE) and (directory / n).is_file()}
    new = {(s.path.name, s.sha256) for s in staged}
    replaced = {s.path.name for s in staged}
    write_manifest(directory, old | new)  # old and new lines: whichever file a crash leaves is listed
    for s in staged:
        s.commit()
    fsync_directory(directory)
    kept = set()
    for name in sorted({n for n, _ in old} - replaced):
        lines = {(n, d) for n, d in old if n == name}
        if len(lines) > 1:  # a crash left both lines of a replacement: keep the one the file matches
            actual = sha256_of_file(directory / name)
            lines = {(n, d) for n, d in lines if d == actual} or lines
        kept |= lines
    write_manifest(directory, kept | new)


def describe_owner(raw: bytes) -> str:
    line = raw.decode("utf-8", errors="replace").split("\n")[0].strip()
    line = "".join(c if c.isprintable() else "?" for c in line)[:200]
    return line or "a process that has not said who it is"


class DirectoryLock:
    """An exclusive flock on DIR/.groupvit.lock, the lock groupvit train and segment take too."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.fd = None

    def __enter__(self):
        path = self.directory / LOCK_FILE
        fd = self._open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            # The shards of a sharded groupvit run hold it shared (the file then names only one
            # of them), which a shared probe tells apart, as the C++ lock does.
            probe = self._open(path)
            try:
                fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
                holder = "the shards of a sharded run"
            except BlockingIOError:
                pass
            finally:
                os.close(probe)
            raise ConversionError(f"{self.directory} is being written by another process ({holder}); "
                                  "wait for it or choose another output directory") from None
        except OSError as exc:
            os.close(fd)
            raise ConversionError(f"{path}: cannot lock: {exc.strerror or exc}") from None
        # Best effort, as in the C++ lock: the lock excludes, the line only makes a refusal readable.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid={os.getpid()} host={socket.gethostname()} command={PROG}\n".encode(), 0)
        self.fd = fd
        return self

    @staticmethod
    def _open(path: Path) -> int:
        try:  # O_RDWR without O_TRUNC: the holder's line survives a refused opener
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # the kernel applies the umask
        except OSError as exc:
            raise ConversionError(f"{path}: cannot open the lock file: {exc.strerror or exc}") from None

    @staticmethod
    def _holder(fd: int) -> str:
        raw = b""
        for _ in range(20):  # the holder writes its line just after it locks
            raw = os.pread(fd, 4096, 0)
            if raw.strip():
                break
            time.sleep(0.01)
        return describe_owner(raw)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # releases the lock; the file stays
            self.fd = None
        return False


# --- conversion --------------------------------------------------------------------------------

def resolve_source(src: str) -> Path:
    path = Path(src)
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{src}: expected a directory, got a file")
    if src.count("/") != 1 or src.startswith(("/", ".")):
        raise ConversionError(f"{src}: no such directory (and not a hub id like owner/name)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(src, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.bin"]))
    except Exception as exc:  # no network here is the common case
        raise ConversionError(
            f"{src}: not a local directory and the hub could not be reached ({type(exc).__name__}). "
            "Download the checkpoint elsewhere and pass its directory."
        ) from None


def read_state_dict(src: Path) -> tuple[dict, str]:
    import torch

    safetensors_path = src / "model.safetensors"
    bin_path = src / "pytorch_model.bin"
    if safetensors_path.exists():
        from safetensors.torch import load_file

        try:
            return load_file(str(safetensors_path)), str(safetensors_path)
        except Exception as exc:
            raise ConversionError(f"{safetensors_path}: cannot read: {exc}") from None
    if bin_path.exists():
        try:
            state = torch.load(str(bin_path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConversionError(f"{bin_path}: cannot read: {exc}") from None
        if not isinstance(state, dict):
            raise ConversionError(f"{bin_path}: expected a state dict, got {type(state).__name__}")
        return state, str(bin_path)
    raise ConversionError(f"{src}: no model.safetensors or pytorch_model.bin")


def expected_tensors(config_path: Path) -> dict:
    """Names, shapes and dtypes of the reference model's state dict, built without memory."""
    import torch
    from transformers import GroupViTConfig, GroupViTModel

    try:
        config = GroupViTConfig.from_json_file(str(config_path))
    except Exception as exc:
        raise ConversionError(f"{config_path}: invalid GroupViT config: {exc}") from None
    with torch.device("meta"):
        model = GroupViTModel(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def check_tensors(state: dict, expected: dict, source: str) -> None:
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected and k not in IGNORED_KEYS]
    wrong = []
    for name, tensor in state.items():
        if name not in expected:
            continue
        shape, dtype = expected[name]
        if tuple(tensor.shape) != shape:
            wrong.append(f"{name}: shape {tuple(tensor.shape)}, expected {shape}")
        elif tensor.is_floating_point() != dtype.is_floating_point:
            wrong.append(f"{name}: dtype {tensor.dtype}, expected {dtype}")
    if missing or unexpected or wrong:
        lines = [f"{source}: the weights do not fit config.json"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape or dtype", wrong)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise ConversionError("\n".join(lines))


def open_clip_vocabulary() -> Path | None:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if candidate.exists():
            return candidate
    return None


def check_config_json(config_path: Path) -> None:
    """A cheap first look, so that a broken config fails before the heavy imports."""
    try:
        value = json.loads(config_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{config_path}: not a readable JSON file: {exc}") from None
    if not isinstance(value, dict):
        raise ConversionError(f"{config_path}: expected a JSON object, got {type(value).__name__}")


def copy_into(source: Path, f) -> None:
    with open(source, "rb") as s:
        shutil.copyfileobj(s, f, 1 << 20)


def convert(src_arg: str, out_dir: Path, dtype_name: str) -> dict:
    out_dir = Path(out_dir)
    with contextlib.ExitStack() as stack:
        # An existing directory is locked first, so that a second writer fails at once (and a
        # conversion in place reads a source nobody else is writing). A new one is created only
        # once the source has been checked.
        locked = out_dir.is_dir()
        if locked:
            stack.enter_context(DirectoryLock(out_dir))
        src = resolve_source(src_arg)
        config_path = src / "config.json"
        if not config_path.exists():
            raise ConversionError(f"{src}: no config.json")
        check_config_json(config_path)

        import torch
        from safetensors.torch import load_file, save

        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        state, weights_source = read_state_dict(src)
        check_tensors(state, expected_tensors(config_path), weights_source)

        target = dtypes[dtype_name]
        tensors = {}
        for name, tensor in state.items():
            if name in IGNORED_KEYS:
                continue
            tensor = tensor.detach().to("cpu").contiguous()
            if tensor.is_floating_point():
                tensor = tensor.to(target)
            tensors[name] = tensor.clone()  # own storage: no views into a shared buffer
        del state

        if not locked:
            make_directories(out_dir)
            stack.enter_context(DirectoryLock(out_dir))
        remove_stale_temporaries(out_dir)
        staged = []
        stack.callback(lambda: [s.discard() for s in staged])  # on any error: no temporary stays

        def same(written) -> bool:
            return written.keys() == tensors.keys() and all(torch.equal(written[k], tensors[k]) for k in tensors)

        # Each weight file is read back from its (fsynced) temporary and compared before it
        # replaces anything, so a bad disk or a serialisation surprise is caught here.
        staged.append(StagedFile(out_dir / WEIGHTS_FILE, lambda f: torch.save(tensors, f)))
        if not same(torch.load(str(staged[-1].tmp), map_location="cpu", weights_only=True)):
            raise ConversionError(f"{out_dir / WEIGHTS_FILE}: read-back differs from what was written")
        # The same tensors as safetensors: the C++ loader reads it straight into the parameters
        # (fast, no second copy in memory); the archive above serves torch::pickle_load users.
        staged.append(StagedFile(out_dir / SAFETENSORS_FILE,
                                 lambda f: f.write(save(tensors, metadata={"format": "pt"}))))
        if not same(load_file(str(staged[-1].tmp))):
            raise ConversionError(f"{out_dir / SAFETENSORS_FILE}: read-back differs from what was written")

        copied = []
        for name in ["config.json"] + TOKENIZER_FILES + PREPROCESSOR_FILES:
            if (src / name).exists():
                staged.append(StagedFile(out_dir / name, lambda f, name=name: copy_into(src / name, f)))
                copied.append(name)
        if not ((src / "vocab.json").exists() and (src / "merges.txt").exists()):
            vocab = open_clip_vocabulary()
            if vocab is None:
                print("warning: the source has no tokenizer files and open-clip-torch is not installed; "
                      "the model directory has no vocabulary", file=sys.stderr)
            else:
                staged.append(StagedFile(out_dir / vocab.name, lambda f: copy_into(vocab, f)))
                copied.append(vocab.name)
        written = sorted(s.path.name for s in staged)
        publish(out_dir, staged)
    return {
        "source": str(src),
        "weights": str(out_dir / WEIGHTS_FILE),
        "tensors": len(tensors),
        "parameters": int(sum(t.numel() for k, t in tensors.items() if t.is_floating_point())),
        "dtype": dtype_name,
        "files": copied,
        "written": written,
        "manifest": str(out_dir / MANIFEST_FILE),
    }


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds like an error: temporaries removed, lock released


def main() -> int:
    process_umask()  # before any thread exists
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="local Hugging Face directory or hub id")
    parser.add_argument("out_dir", type=Path, help="model directory to write (may be SRC)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                        help="storage dtype of floating tensors (default fp32)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args()
    try:
        summary = convert(args.src, args.out_dir, args.dtype)
    except ConversionError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['tensors']} tensors ({summary['parameters']:,} values, {summary['dtype']}) "
              f"and {', '.join(summary['files'])} to {args.out_dir}, with their SHA-256 in {MANIFEST_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
