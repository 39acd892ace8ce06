"""A real single-node Slurm cluster for a test: munged, slurmctld and slurmd started by hand.

    with SlurmCluster() as cluster:
        job = cluster.sbatch("groupvit segment ...", array="0-3")
        cluster.wait(job, timeout=120)
        states = cluster.task_states(job)   # {task id: TaskState(...)}

Needs Debian's slurm-wlm 22.05 and munge (scripts/setup.sh installs them; docs in
/work/shared/notes/slurm.md on the settings). Nothing outside one temporary directory is touched:
the munge key and socket, slurm.conf, the controller's state, the spool, the daemons' logs, the job
scripts, their stdout/stderr and the exit status files all live there, and SLURM_CONF points every
command (daemons and clients) at its slurm.conf. The ports are free ports picked at start, so
clusters of separate tests do not collide on ports.

Accounting is off (no slurmdbd, no sacct). What a task exited with comes from the job script
itself: sbatch() wraps the given script so that it writes its exit status to
STATUS/<job>/exit-<task> when it ends (also after a scancel's SIGTERM, which the wrapper waits out:
the command gets the signal, finishes and exits, and its status is recorded). Slurm's own view
(JobState, ExitCode) comes from `scontrol show job` while the controller remembers the job.

Every wait is bounded. The daemons are stopped by their PIDs on exit (also when the test fails,
and from an atexit hook and SIGTERM/SIGINT/SIGHUP handlers as a safety net); they also get
PR_SET_PDEATHSIG, so that a test killed with SIGKILL takes them with it. Job processes that
outlive slurmd (slurmstepd, the job script and its commands) are found by the marker variable this
cluster puts into their environment and killed by PID: by stop(), or, when the test was killed
with SIGKILL, by a detached reaper process that waits for the test to go.
"""
import atexit
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = "GROUPVIT_TEST_SLURM_CLUSTER"  # in the environment of every process this cluster starts
CLIENT_TIMEOUT = 30  # seconds for one client command (sbatch, squeue, scontrol, scancel, sinfo)
POLL = 0.25  # seconds between squeue polls (a scheduling round is about 3 s)

_live = []  # clusters started and not yet stopped, for the atexit / signal safety net


class SlurmError(RuntimeError):
    pass


@dataclass
class TaskState:
    task: int
    exit_code: int = None  # what the job script exited with (from its status file); None: no status file
    state: str = None  # Slurm's JobState (COMPLETED, FAILED, CANCELLED, ...) while scontrol knows the job
    slurm_exit: str = None  # Slurm's ExitCode "code:signal"

    def __str__(self):
        return f"task {self.task}: exit {self.exit_code}, Slurm {self.state} ExitCode={self.slurm_exit}"


def _free_ports(n):
    """n distinct TCP ports free on 127.0.0.1 right now (bound together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def die_with_parent():
    """preexec_fn: SIGKILL this child when the test process dies (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 a safety net only
        pass


def _tail(path, lines=25):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"  ({path}: {e.strerror})"
    return "\n".join("  " + line for line in text[-lines:]) or "  (empty)"


# The last safety net, for a test killed with SIGKILL (CTest's TIMEOUT): a detached process that waits
# for the test to go and then kills what carries the cluster's marker (slurmstepd and the jobs outlive
# slurmd, which PR_SET_PDEATHSIG takes) and removes the directory. It exits by itself once stop() has
# removed the directory.
_REAPER = r"""
import os, shutil, signal, sys, time
pid, start, root, needle = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].encode() + b"\0"
if os.fork():
    os._exit(0)
os.setsid()
def started(p):
    try:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
while started(pid) == start and os.path.isdir(root):
    time.sleep(0.5)
if not os.path.isdir(root):
    sys.exit(0)
for _ in range(50):
    found = False
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) != os.getpid():
            try:
                with open(f"/proc/{e}/environ", "rb") as f:
                    if needle in f.read() + b"\0":
                        os.kill(int(e), signal.SIGKILL)
                        found = True
            except OSError:
                pass
    if not found:
        break
    time.sleep(0.1)
shutil.rmtree(root, ignore_errors=True)
"""


def _start_reaper(root):
    with open(f"/proc/{os.getpid()}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    subprocess.run([sys.executable, "-c", _REAPER, str(os.getpid()), start, str(root), f"{MARKER}={root}"],
                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=CLIENT_TIMEOUT, check=True)


def _safety_net_stop():
    for cluster in list(_live):
        cluster.stop()


def _on_signal(signum, frame):
    # Unwind through the with-blocks' finally clauses (they stop the clusters); atexit is the backstop.
    raise SystemExit(128 + signum)


_handlers_installed = False


def _install_safety_net():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_safety_net_stop)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, _on_signal)


class SlurmCluster:
    def __init__(self, start_timeout=30, keep_dir_on_failure=False):
        self.start_timeout = start_timeout
        self.keep_dir_on_failure = keep_dir_on_failure
        self.root = None
        self.procs = {}  # name -> Popen
        self.env = None
        self._scripts = 0

    # --- context manager -------------------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(failed=exc_type is not None)
        return False

    # --- start ------------------------------------------------------------------------------------

    def start(self):
        _install_safety_net()
        for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo"):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                raise SlurmError(f"{tool} not found: install slurm-wlm and munge (scripts/setup.sh)")
        self.root = Path(tempfile.mkdtemp(prefix="groupvit-slurm-"))
        _live.append(self)
        _start_reaper(self.root)
        r = self.root
        for d in ("munge", "state", "spool/localhost", "log", "jobs", "status"):
            (r / d).mkdir(parents=True)
        os.chmod(r, 0o755)
        os.chmod(r / "munge", 0o755)  # 0700 gives munged "Socket is inaccessible"
        key = r / "munge/munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)
        self.conf = r / "slurm.conf"
        # Without the variables of an enclosing Slurm job and the clients' option variables (SBATCH_ARRAY_INX,
        # SQUEUE_FORMAT, ...): they would reach this cluster's commands and jobs.
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCONTROL_",
                                          "SCANCEL_", "MUNGE_"))}
        self.env = dict(inherited, SLURM_CONF=str(self.conf), **{MARKER: str(r)})
        path = self.env.get("PATH", "")
        if "/usr/sbin" not in path.split(":"):
            self.env["PATH"] = path + ":/usr/sbin"

        self._spawn("munged", ["munged", "--foreground", "--force", f"--key-file={key}",
                               f"--socket={r}/munge/munge.socket", f"--pid-file={r}/munge/munged.pid",
                               f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/munged.seed"])
        self._wait_for(lambda: (r / "munge/munge.socket").exists(), "munged's socket", ["munged"])

        ctld_port, slurmd_port = _free_ports(2)
        self.conf.write_text(self._slurm_conf(ctld_port, slurmd_port))
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost"])

        def idle():
            p = self._client(["sinfo", "-h", "-N", "-o", "%N %T"], check=False)
            return p.returncode == 0 and p.stdout.split() == ["localhost", "idle"]

        self._wait_for(idle, "sinfo to report the node idle", ["slurmctld", "slurmd", "munged"])
        return self

    def _slurm_conf(self, ctld_port, slurmd_port):
        r = self.root
        hw = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                            env=self.env).stdout
        first = next((line for line in hw.splitlines() if line.startswith("NodeName=")), None)
        if first is None:
            raise SlurmError(f"`slurmd -C` printed no NodeName line:\n{hw}")
        hardware = " ".join(w for w in first.split() if not w.startswith("NodeName="))
        user = pwd.getpwuid(os.getuid()).pw_name  # root here; the daemons run as whoever runs the test
        return f"""# written by test/slurm_cluster.py
ClusterName=groupvit-test
SlurmctldHost=localhost
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
KillWait=30
MinJobAge=600
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 {hardware}
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

    def _spawn(self, name, argv):
        log = open(self.root / "log" / f"{name}.stdout", "wb")
        try:
            self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                env=self.env, cwd=self.root, preexec_fn=die_with_parent)
        finally:
            log.close()

    def _wait_for(self, ready, what, daemons):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for name in daemons:
                if self.procs[name].poll() is not None:
                    raise SlurmError(f"{name} exited with {self.procs[name].returncode} while waiting for {what}\n"
                                     + self.logs())
            if ready():
                return
            time.sleep(0.05)
        raise SlurmError(f"timed out after {self.start_timeout}s waiting for {what}\n" + self.logs())

    def logs(self, lines=25):
        """The tails of the daemons' logs, for an error message."""
        out = []
        for f in sorted((self.root / "log").glob("*")):
            out.append(f"--- {f.name} (last {lines} lines)\n{_tail(f, lines)}")
        return "\n".join(out)

    # --- clients ----------------------------------------------------------------------------------

    def _client(self, argv, check=True, timeout=CLIENT_TIMEOUT):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise SlurmError(f"{' '.join(argv)} took over {timeout}s\n" + self.logs()) from e
        if check and p.returncode != 0:
            raise SlurmError(f"{' '.join(argv)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        return p

    def sbatch(self, script_text, array=None, extra_args=()):
        """Submits a bash script; returns the job id (the array's job id for an array).

        The script runs under a wrapper that records its exit status (see status_file) and, on
        SIGTERM (scancel), waits for the running command to finish and then exits with its status.
        Do not `exec` the command: the status could not be recorded. stdout/stderr go to
        log_file(job, task, "out"/"err")."""
        self._scripts += 1
        script = self.root / "jobs" / f"script-{self._scripts}.sh"
        status = self.root / "status"
        script.write_text(f"""#!/bin/bash
# written by test/slurm_cluster.py: the test's script between the markers.
__job="${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}"
__status="{status}/$__job/exit-${{SLURM_ARRAY_TASK_ID:-none}}"
mkdir -p "{status}/$__job"
trap '__rc=$?; echo "$__rc" > "$__status.tmp"; mv "$__status.tmp" "$__status"' EXIT
# bash runs this trap once the foreground command has exited (the command gets the SIGTERM
# itself): the script then ends with the command's status.
trap 'exit $?' TERM
# --- the test's script
{script_text}
# --- end
""")
        argv = ["sbatch", "--parsable", "-o", f"{self.root}/jobs/%A_%a.out", "-e", f"{self.root}/jobs/%A_%a.err",
                f"--chdir={self.root}/jobs"]
        if array is not None:
            argv.append(f"--array={array}")
        argv += [*extra_args, str(script)]
        out = self._client(argv).stdout.strip()
        job = out.split(";")[0]
        if not job.isdigit():
            raise SlurmError(f"sbatch printed {out!r}, not a job id")
        return job

    def log_file(self, job, task, kind="err"):
        return self.root / "jobs" / f"{job}_{task}.{kind}"

    def log_text(self, job, task, kind="err"):
        try:
            return self.log_file(job, task, kind).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def status_file(self, job, task):
        return self.root / "status" / str(job) / f"exit-{task}"

    def queued(self, job):
        """The job's entries in squeue ('5_[2-3]', '5_0', ...); [] once all have left the queue."""
        p = self._client(["squeue", "-h", "-j", str(job), "-o", "%i %T"], check=False)
        if p.returncode != 0:
            if "Invalid job id" in p.stderr:
                return []
            raise SlurmError(f"squeue exited {p.returncode}: {p.stderr}")
        return [line for line in p.stdout.splitlines() if line.strip()]

    def wait(self, job, timeout):
        """Polls squeue until every task of the job has left the queue; SlurmError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.queued(job)
            if not left:
                return
            if time.monotonic() > deadline:
                raise SlurmError(f"job {job} still queued after {timeout}s: {left}\n" + self.describe(job))
            time.sleep(POLL)

    def scontrol_records(self, job):
        """`scontrol -o show job JOB` as a list of {key: value} (one per array task record)."""
        p = self._client(["scontrol", "-o", "show", "job", str(job)], check=False)
        if p.returncode != 0:
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in p.stdout.splitlines() if line.strip()]

    def task_states(self, job):
        """{task id: TaskState} for every task that has a status file or a scontrol record."""
        states = {}
        for rec in self.scontrol_records(job):
            task = rec.get("ArrayTaskId", "none")
            if task.isdigit():
                states[int(task)] = TaskState(int(task), state=rec.get("JobState"), slurm_exit=rec.get("ExitCode"))
        d = self.root / "status" / str(job)
        for f in d.glob("exit-*") if d.is_dir() else ():
            task = f.name[len("exit-"):]
            if task.isdigit():
                st = states.setdefault(int(task), TaskState(int(task)))
                text = f.read_text().strip()
                st.exit_code = int(text) if text.lstrip("-").isdigit() else None
        return dict(sorted(states.items()))

    def describe(self, job):
        """What is known about a job, for an assertion message: task states and stderr tails."""
        lines = [f"job {job}:"]
        states = self.task_states(job)
        for st in states.values():
            lines.append(f"  {st}")
            err = self.log_text(job, st.task, "err").strip().splitlines()
            for line in err[-8:]:
                lines.append(f"    stderr| {line}")
        if not states:
            lines.append("  (no task states)")
        return "\n".join(lines)

    def scancel(self, job_or_task, *args):
        """scancel JOB or JOB_TASK (e.g. '5_2'); args are scancel options (e.g. '-s', 'KILL')."""
        self._client(["scancel", *args, str(job_or_task)])

    # --- stop -------------------------------------------------------------------------------------

    def _marked_pids(self):
        """PIDs of processes (other than this one) whose environment carries this cluster's marker:
        the daemons, slurmstepd and the jobs' processes."""
        needle = f"{MARKER}={self.root}".encode() + b"\0"
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read() + b"\0":
                        pids.append(int(entry))
            except OSError:
                pass
        return pids

    def stop(self, failed=False):
        """Cancels what is left, stops the daemons by PID, kills stray job processes, removes the dir.
        Idempotent; bounded (about 15 s at worst)."""
        if self not in _live:
            return
        try:
            ctld = self.procs.get("slurmctld")
            if ctld is not None and ctld.poll() is None:
                try:
                    self._client(["scancel", "--full", "--user", str(os.getuid())], check=False, timeout=10)
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:
                        p = self._client(["squeue", "-h", "-o", "%i"], check=False, timeout=10)
                        if p.returncode != 0 or not p.stdout.strip():
                            break
                        time.sleep(POLL)
                except Exception:  # noqa: BLE001 stop the daemons whatever the clients do
                    pass
            for name in ("slurmd", "slurmctld", "munged"):
                proc = self.procs.get(name)
                if proc is None or proc.poll() is not None:
                    continue
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if self.root is not None:
                deadline = time.monotonic() + 3
                while (pids := self._marked_pids()) and time.monotonic() < deadline:
                    for pid in pids:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.05)
        finally:
            _live.remove(self)
            if self.root is not None:
                if failed and self.keep_dir_on_failure:
                    print(f"slurm_cluster: kept {self.root} for inspection")
                else:
                    shutil.rmtree(self.root, ignore_errors=True)
