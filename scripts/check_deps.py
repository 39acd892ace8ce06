#!/usr/bin/env python3
"""Checks that everything the build uses is installed by scripts/setup.sh (or is part of the base system).

CI runs on a machine that is set up once and kept, so a package installed there by hand keeps CI
green while a fresh machine fails. This check makes that visible; it runs after configure + build:

  scripts/check_deps.py --build-dir build [--debian-packages FILE] [--requirements FILE ...]
                        [--requirements-nodeps FILE ...] [--venv DIR] [--json]

Debian part. The system files the build uses are
  * the CMake cache's FILEPATH/PATH/STRING/UNINITIALIZED values that are absolute paths of existing
    files or directories (`;` lists split; *-NOTFOUND values, CMAKE_INSTALL_* destinations and
    CMAKE_IGNORE_* exclusions skipped), and every file inside each find_package config directory
    (`<Pkg>_DIR` holding <Pkg>Config.cmake or <pkg>-config.cmake);
  * every header the compiler read (`ninja -t deps`);
  * every existing absolute path on the link lines (LINK_LIBRARIES, LINK_PATH, LINK_FLAGS of
    build.ninja and CMakeFiles/*.ninja): libraries, -L and -rpath directories, and the file each
    -lfoo resolves to (through the line's -L folders, the compiler's library folders, which include
    LIBRARY_PATH, and ld's built-in ones);
  * the interpreter the venv was created from (setup.sh runs `python3 -m venv`).
Paths inside the repository, the build folder and the venv are the project's own or come from
PyPI (the Python part covers those). Each remaining path is followed along its symlink chain (a -dev
package's libfoo.so link and the runtime package's libfoo.so.1.2 are both needed); every link in it
must be owned by a Debian package (dpkg's file lists, /usr-merge spellings /lib = /usr/lib treated as
one, update-alternatives links such as /usr/bin/c++ looked through), and one owner of each must be
allowed. A path no package owns (/usr/local, /opt, a pyenv Python, a hand-installed CUDA toolkit)
is a violation too.

Allowed packages = BASE + closure(SETUP):
  SETUP  the packages scripts/setup.sh installs, as `setup.sh --list-debian-packages` prints them;
  BASE   the installed packages whose Priority is `required` plus their closure. That is the set
         every Debian 12 system has: debootstrap's minbase variant, which the official debian:12
         container image is made with, installs exactly the `required` packages (apt among them).
         Priority is a property of the package itself (dpkg copies it from the archive into
         /var/lib/dpkg/status), so unlike `apt-mark showmanual` or apt's history it does not depend
         on who installed the package or when. `important` (systemd, iproute2, man-db, ...) is not
         included: a default debootstrap installs it but container images do not, and its closure
         brings many libraries.
  closure  Depends and Pre-Depends followed recursively through the installed packages: of the
         alternatives `a | b` the first one installed, a virtual package through the installed
         packages that Provide it, version constraints and arch qualifiers dropped. Recommends are
         not followed (setup.sh installs with --no-install-recommends).

Python part. Every distribution in the venv's site-packages must be named in a requirements file
(scripts/requirements.txt), be in the Requires-Dist closure of what is named there (environment
markers evaluated by the venv's own interpreter, extras followed), be named in a --no-deps file
(scripts/requirements-nodeps.txt, whose dependencies are not followed), or be the venv's seed (pip,
and setuptools up to Python 3.11, as `python -m venv` creates them). Names compare PEP 503-normalised.
This part runs under the venv's interpreter, which brings `packaging` (or pip's vendored copy).

Exit status: 0 clean, 1 violations (each named with its file and package or distribution),
2 usage error (no CMakeCache.txt, nothing compiled yet, unreadable list, ...).
"""

import argparse
import functools
import glob
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_INFO = "/var/lib/dpkg/info"
DPKG_ALTERNATIVES = "/var/lib/dpkg/alternatives"
ALTERNATIVES_DIR = "/etc/alternatives"
# Directories that Debian 12's merged /usr turns into symlinks: dpkg may list /lib/x/libz.so.1
# where the build sees /usr/lib/x/libz.so.1.
USR_MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What `python -m venv` puts into a new environment (ensurepip); Python 3.12 dropped setuptools.
VENV_SEED = ("pip", "setuptools") if sys.version_info < (3, 12) else ("pip",)
# The link-step variables of CMake's Ninja generator.
LINK_VARIABLES = ("LINK_LIBRARIES", "LINK_PATH", "LINK_FLAGS")
FILES_SHOWN_PER_PACKAGE = 10
# Cache entries that name paths the build does not read.
NOT_INPUTS = re.compile(r"CMAKE_(INSTALL|IGNORE|SYSTEM_IGNORE)_")


class UsageError(Exception):
    """Something the check needs is missing or unreadable: exit status 2."""


# --- command line ----------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--build-dir", required=True, help="a configured and built CMake/Ninja build folder")
    parser.add_argument("--debian-packages",
                        help="a file listing the allowed Debian packages, one a line (default: what "
                             "`scripts/setup.sh --list-debian-packages` prints)")
    parser.add_argument("--requirements", action="append",
                        help="a pip requirements file, dependencies followed; may be repeated "
                             "(default: scripts/requirements.txt)")
    parser.add_argument("--requirements-nodeps", action="append",
                        help="a pip requirements file installed with --no-deps; may be repeated "
                             "(default: scripts/requirements-nodeps.txt where it exists)")
    parser.add_argument("--venv", default=os.path.join(ROOT, ".venv"), help="the virtual environment (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable report instead")
    args = parser.parse_args(argv)
    if args.requirements is None:
        args.requirements = [os.path.join(ROOT, "scripts", "requirements.txt")]
    if args.requirements_nodeps is None:
        default = os.path.join(ROOT, "scripts", "requirements-nodeps.txt")
        args.requirements_nodeps = [default] if os.path.exists(default) else []
    args.build_dir = os.path.abspath(args.build_dir)
    args.venv = os.path.abspath(args.venv)
    return args


# --- Debian: the package database ------------------------------------------------------------------

@dataclass
class Package:
    priority: str = ""
    depends: list = field(default_factory=list)   # [[alternative, ...], ...] from Depends + Pre-Depends
    provides: set = field(default_factory=set)


def bare_name(relation):
    """'libc6:amd64 (>= 2.34) [amd64]' -> 'libc6'."""
    return re.sub(r"\(.*?\)|\[.*?\]|<.*?>", "", relation).strip().split(":")[0]


def parse_relations(value):
    """A Depends-style field as a list of alternative groups."""
    groups = []
    for clause in value.split(","):
        alternatives = [bare_name(a) for a in clause.split("|")]
        if any(alternatives):
            groups.append([a for a in alternatives if a])
    return groups


def read_dpkg_status(path=DPKG_STATUS):
    """The installed packages (Status '... installed'), one entry per name (architectures merged)."""
    packages = {}
    with open(path, encoding="utf-8") as f:
        stanzas = f.read().split("\n\n")
    for stanza in stanzas:
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" not in fields or not fields.get("Status", "").endswith(" installed"):
            continue
        package = packages.setdefault(fields["Package"], Package())
        package.priority = fields.get("Priority", package.priority)
        package.depends += parse_relations(fields.get("Depends", "")) + parse_relations(fields.get("Pre-Depends", ""))
        package.provides |= {bare_name(p) for p in fields.get("Provides", "").split(",") if p.strip()}
    return packages


def dependency_closure(roots, packages):
    """The roots plus everything their Depends/Pre-Depends pull in among the installed packages."""
    providers = {}
    for name, package in packages.items():
        for virtual in package.provides:
            providers.setdefault(virtual, set()).add(name)

    def satisfiers(alternatives):
        # The first alternative that is installed, the way apt prefers the first one it can install.
        for name in alternatives:
            if name in packages:
                return {name}
            if name in providers:
                return providers[name]
        return set()

    closure, pending = set(), list(roots)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        for group in packages[name].depends if name in packages else ():
            pending += satisfiers(group) - closure
    return closure


def base_packages(packages):
    """Priority `required` and what it depends on: debootstrap's minbase, i.e. every Debian system."""
    return dependency_closure([n for n, p in packages.items() if p.priority == "required"], packages)


SETUP_SCRIPT = os.path.join(ROOT, "scripts", "setup.sh")


def read_package_list(path=None):
    """The Debian packages setup.sh installs (it prints its own list), or those of a file: the first
    word of each line, `#` starting a comment."""
    try:
        if path is None:
            text = subprocess.run(["bash", SETUP_SCRIPT, "--list-debian-packages"], capture_output=True, text=True,
                                  check=True).stdout
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"cannot read the Debian package list: {e}")
    lines = [line.split("#", 1)[0].split() for line in text.splitlines()]
    return [words[0] for words in lines if words]


def usr_merge_aliases():
    """[('/lib/', '/usr/lib/'), ...] for the top-level directories that are links into /usr here."""
    return [(f"/{d}/", f"/usr/{d}/") for d in USR_MERGED_DIRS if os.path.realpath(f"/{d}") == f"/usr/{d}"]


def canonical(path, aliases):
    """One spelling for both sides of merged /usr: the /usr one."""
    for alias, target in aliases:
        if path.startswith(alias):
            return target + path[len(alias):]
    return path


def read_file_owners(aliases, info_dir=DPKG_INFO):
    """{canonical path: {package, ...}} from dpkg's file lists, read once (dpkg -S per file is slow)."""
    owners = {}
    for list_file in glob.glob(os.path.join(info_dir, "*.list")):
        package = os.path.basename(list_file)[:-len(".list")].split(":")[0]
        with open(list_file, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                owners.setdefault(canonical(line.rstrip("\n"), aliases), set()).add(package)
    return owners


def read_alternative_links(admin_dir=DPKG_ALTERNATIVES):
    """The links update-alternatives manages (/usr/bin/c++, /etc/alternatives/c++, ...): no package
    owns them, the package scripts that register an alternative create them."""
    links = set()
    for admin_file in glob.glob(os.path.join(admin_dir, "*")):
        with open(admin_file, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if len(lines) < 2:
            continue
        # mode, master link, then (slave name, slave link) pairs up to an empty line
        links |= {lines[1], os.path.join(ALTERNATIVES_DIR, os.path.basename(admin_file))}
        index = 2
        while index + 1 < len(lines) and lines[index]:
            links |= {lines[index + 1], os.path.join(ALTERNATIVES_DIR, lines[index])}
            index += 2
    return links


# --- Debian: what the build uses -------------------------------------------------------------------

def read_cmake_cache(build_dir):
    """[(name, type, value)] of CMakeCache.txt."""
    path = os.path.join(build_dir, "CMakeCache.txt")
    if not os.path.isfile(path):
        raise UsageError(f"{path} not found: configure first (scripts/setup.sh)")
    entries = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            match = re.match(r"([^#/][^:]*):([A-Z]+)=(.*)$", line.rstrip("\n"))
            if match:
                entries.append(match.groups())
    return entries


def is_package_config_dir(name, directory):
    """Whether a `<Pkg>_DIR` entry is what find_package(<Pkg>) records: the folder of its config file."""
    package = name[:-len("_DIR")]
    wanted = {f"{package}Config.cmake".lower(), f"{package}-config.cmake".lower()}
    return os.path.isdir(directory) and any(f.lower() in wanted for f in os.listdir(directory))


def files_from_cache(entries):
    """{path: where seen} for the cache's absolute, existing paths and the package config folders."""
    found = {}
    for name, kind, value in entries:
        # INTERNAL/STATIC are CMake's own bookkeeping; CMAKE_INSTALL_* are destinations and
        # CMAKE_IGNORE_PATH & co. folders kept out of the search, not inputs.
        if kind not in ("FILEPATH", "PATH", "STRING", "UNINITIALIZED") or NOT_INPUTS.match(name):
            continue
        for item in value.split(";"):
            if not os.path.isabs(item) or item.endswith("-NOTFOUND") or not os.path.exists(item):
                continue
            found.setdefault(item, f"CMakeCache.txt {name}")
            if name.endswith("_DIR") and is_package_config_dir(name, item):
                for folder, _, files in os.walk(item):
                    for file in files:
                        found.setdefault(os.path.join(folder, file), f"CMakeCache.txt {name}")
    return found


def files_from_ninja_deps(build_dir):
    """{path: where seen} for every header (and source) the compiler read, from ninja's deps log."""
    try:
        out = subprocess.run(["ninja", "-C", build_dir, "-t", "deps"], check=True, capture_output=True,
                             text=True, errors="surrogateescape").stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"`ninja -C {build_dir} -t deps` failed: {e}")
    found, target = {}, None
    for line in out.splitlines():
        if line.startswith("    "):
            path = os.path.normpath(os.path.join(build_dir, line.strip()))
            if os.path.exists(path):  # the log still names headers deleted since the last build
                found.setdefault(path, f"compiled for {target}")
        elif line.strip():
            target = line.split(": #deps", 1)[0]
    if not found:
        raise UsageError(f"ninja records no compiled files in {build_dir}: build first (scripts/setup.sh)")
    return found


def link_steps(build_dir):
    """[(target, its LINK_* variables' text)] of the link edges in the build's ninja files."""
    steps = []
    ninja_files = glob.glob(os.path.join(build_dir, "*.ninja")) + glob.glob(os.path.join(build_dir, "CMakeFiles", "*.ninja"))
    for ninja_file in ninja_files:
        with open(ninja_file, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                if line.startswith("build "):
                    steps.append((re.match(r"build (.*?)(?<!\$):", line).group(1), []))
                elif steps:
                    variable, _, value = line.strip().partition(" = ")
                    if variable in LINK_VARIABLES:
                        steps[-1][1].append(value)
    return [(target, " ".join(values)) for target, values in steps if values]


@functools.lru_cache(maxsize=None)
def default_library_dirs(compiler, linker):
    """Where ld looks for -lfoo after the command line's -L folders: the compiler driver's library
    folders (LIBRARY_PATH among them), then ld's built-in SEARCH_DIRs (/usr/local/lib among those)."""
    driver = subprocess.run([compiler, "-print-search-dirs"], capture_output=True, text=True).stdout
    libraries = re.search(r"^libraries: =(.*)$", driver, re.M)
    script = subprocess.run([linker, "--verbose"], capture_output=True, text=True).stdout
    folders = (libraries.group(1).split(":") if libraries else []) + re.findall(r'SEARCH_DIR\("=?([^"]+)"\)', script)
    return [f for f in folders if f.startswith("/")]


def find_library(name, folders):
    """The file ld takes for -l<name>: lib<name>.so before lib<name>.a, folder by folder; -l:<file> exactly."""
    candidates = [name[1:]] if name.startswith(":") else [f"lib{name}.so", f"lib{name}.a"]
    for folder in folders:
        for candidate in candidates:
            if os.path.isfile(os.path.join(folder, candidate)):
                return os.path.normpath(os.path.join(folder, candidate))
    return None


def files_from_link_lines(build_dir, compiler, linker):
    """{path: where seen} for the link steps' existing absolute paths (libraries, -L and -rpath
    folders) and for the files their -lfoo options resolve to."""
    found = {}
    for target, text in link_steps(build_dir):
        # Paths also sit in -Wl,--no-as-needed,"/x/libfoo.so", -L/x and -Wl,-rpath,/x:/y.
        chunks = re.split(r"[\s\"',]+", text)
        tokens = [t for chunk in chunks for t in (chunk.split(":") if chunk.startswith("/") else [chunk])]
        link_dirs = [t[2:] for t in tokens if t.startswith("-L/")]
        for token in tokens:
            if token.startswith("-l"):
                path = find_library(token[2:], link_dirs + default_library_dirs(compiler, linker))
            else:
                path = token[2:] if token.startswith("-L") else token
            if path and path.startswith("/") and os.path.exists(path):
                found.setdefault(os.path.normpath(path), f"linked into {target}")
    return found


def files_from_venv(venv):
    """{path: where seen} for the interpreter the venv was made from: on a fresh machine that is
    Debian's python3 (python3-venv), here it may be a hand-built one the venv links to."""
    path = os.path.join(venv, "bin", "python")
    while os.path.islink(path) and is_inside(path, [venv]):
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    if is_inside(path, [venv]):  # made with --copies: only pyvenv.cfg's `home` tells where from
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as f:
            path = re.search(r"^home\s*=\s*(.*?)\s*$", f.read(), re.M).group(1)
    return {path: "the venv's base interpreter"} if os.path.exists(path) else {}


def is_inside(path, folders):
    return any(path == f or path.startswith(f + os.sep) for f in folders)


# --- Debian: who brought each file ------------------------------------------------------------------

class Owners:
    """Answers which packages stand behind a path the build saw."""

    def __init__(self):
        self.aliases = usr_merge_aliases()
        self.files = read_file_owners(self.aliases)
        self.alternative_links = read_alternative_links()

    def owners(self, path):
        """The path's packages under its own name, else with its directories resolved (a path seen
        through a directory link); set() when no package has it."""
        found = self.files.get(canonical(path, self.aliases))
        if found is None:
            resolved = os.path.join(real_dir(os.path.dirname(path)), os.path.basename(path))
            found = self.files.get(canonical(resolved, self.aliases))
        return found or set()

    def chain(self, path):
        """The path and each symlink it leads to (final component only), update-alternatives' links
        left out: [(link or file, {owning packages})]."""
        hops, seen = [], set()
        while path not in seen:
            seen.add(path)
            if path not in self.alternative_links:
                hops.append((path, self.owners(path)))
            if not os.path.islink(path):
                break
            path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
        return hops


@functools.lru_cache(maxsize=None)
def real_dir(directory):
    return os.path.realpath(directory)


def used_system_paths(args):
    """{source: {path: where seen}} of what the build uses outside the repository, build and venv."""
    ignored = [ROOT, args.build_dir, args.venv]
    cache = read_cmake_cache(args.build_dir)
    tools = {name: value for name, _, value in cache if name in ("CMAKE_CXX_COMPILER", "CMAKE_LINKER")}
    sources = {"cache": files_from_cache(cache),
               "compiled": files_from_ninja_deps(args.build_dir),
               "linked": files_from_link_lines(args.build_dir, tools.get("CMAKE_CXX_COMPILER", "c++"),
                                               tools.get("CMAKE_LINKER", "ld")),
               "venv": files_from_venv(args.venv)}
    return {name: {p: where for p, where in found.items() if not is_inside(p, ignored)} for name, found in sources.items()}


def check_paths(sources, allowed, ignored):
    """Follows every path's symlink chain to its packages: (violations, {package: files used},
    number of files and links checked)."""
    owners = Owners()
    first_seen = {}  # a path several sources name is checked once
    for found in sources.values():
        for path, where in found.items():
            first_seen.setdefault(path, where)
    used_packages, violations, checked = {}, [], set()
    for path, where in first_seen.items():
        for hop, hop_owners in owners.chain(path):
            if hop in checked or is_inside(hop, ignored):
                continue
            checked.add(hop)
            # Directories such as /usr/include belong to dozens of packages: count files only,
            # and for the rare file with several owners, the allowed ones.
            if not os.path.isdir(hop):
                for package in (hop_owners & allowed) or hop_owners:
                    used_packages[package] = used_packages.get(package, 0) + 1
            if not hop_owners:
                violations.append({"file": hop, "seen_as": path, "seen_in": where, "package": None,
                                   "reason": "not from any Debian package (installed by hand?)"})
            elif not hop_owners & allowed:
                violations.append({"file": hop, "seen_as": path, "seen_in": where, "package": " | ".join(sorted(hop_owners)),
                                   "reason": "not installed by scripts/setup.sh nor part of the base system"})
    return violations, used_packages, len(checked)


def debian_report(args):
    """Every system file the build uses, its packages, and the violations."""
    packages = read_dpkg_status()
    setup = read_package_list(args.debian_packages)
    setup_closure = dependency_closure(setup, packages)
    base = base_packages(packages)
    sources = used_system_paths(args)
    violations, used_packages, checked = check_paths(sources, setup_closure | base, [ROOT, args.build_dir, args.venv])

    def allowed_as(package):
        return ("named" if package in setup else "dependency of a named package" if package in setup_closure
                else "base system" if package in base else "not allowed")

    return {
        "paths_examined": len({p for found in sources.values() for p in found}),
        "paths_by_source": {name: len(found) for name, found in sources.items()},
        "files_and_links_checked": checked,
        "package_list": args.debian_packages or SETUP_SCRIPT + " --list-debian-packages",
        "listed_not_installed": sorted(p for p in setup if p not in packages),
        "base_packages": len(base),
        "packages_used": {p: {"files": n, "allowed_as": allowed_as(p)} for p, n in sorted(used_packages.items())},
        "violations": violations,
    }


# --- Python: the venv's distributions ----------------------------------------------------------------

def normalize(name):
    """PEP 503."""
    return re.sub(r"[-_.]+", "-", name).lower()


def import_requirement_class():
    """packaging's Requirement: the venv's own copy, else the one vendored in pip."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        try:
            from pip._vendor.packaging.requirements import Requirement
        except ImportError:
            raise UsageError(f"{sys.executable} has neither packaging nor pip: is it the venv setup.sh made?")
    return Requirement


def read_requirements(path, requirement_class):
    """The requirements of a pip requirements file (-r includes followed, other options skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().replace("\\\n", "")
    except OSError as e:
        raise UsageError(f"cannot read the requirements file: {e}")
    requirements = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        include = re.match(r"(-r|--requirement)[\s=]+(\S+)$", line)
        if include:
            requirements += read_requirements(os.path.join(os.path.dirname(path), include.group(2)), requirement_class)
        elif line and not line.startswith("-"):  # -c, --index-url, ...: options, no packages
            try:
                requirements.append(requirement_class(line))
            except Exception as e:
                raise UsageError(f"{path}: cannot parse {line!r}: {e}")
    return requirements


def wanted(requirement, extras):
    """Whether a Requires-Dist line applies here to any of these extras ("" = the plain distribution)."""
    return requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in extras)


def installed_distributions():
    """{normalized name: distribution} of this interpreter's site-packages (lib64 duplicates merged)."""
    from importlib.metadata import distributions
    folders = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    found = {}
    for distribution in distributions(path=sorted(folders)):
        found.setdefault(normalize(distribution.metadata["Name"]), distribution)
    return found


def python_report(requirement_files, nodeps_files):
    """Runs under the venv's interpreter (markers are evaluated for it): distributions outside the
    requirements' closure, the --no-deps files and the venv's seed."""
    requirement_class = import_requirement_class()
    installed = installed_distributions()
    allowed = {normalize(name): "seed of python -m venv" for name in VENV_SEED}
    pending = []  # (name, extras, follow its dependencies, why allowed)
    for follow, files in ((True, requirement_files), (False, nodeps_files)):
        for path in files:
            for r in read_requirements(path, requirement_class):
                if wanted(r, {""}):
                    pending.append((normalize(r.name), set(r.extras), follow, f"named in {os.path.relpath(path, ROOT)}"))
    expanded = {}  # name -> extras whose dependencies were followed ("" = the plain distribution)
    while pending:
        name, extras, follow, why = pending.pop(0)
        allowed.setdefault(name, why)
        if not follow or name not in installed:
            continue  # a missing requirement is pip check's concern, not this check's
        new_extras = ({""} | extras) - expanded.setdefault(name, set())
        expanded[name] |= new_extras
        for line in installed[name].requires or []:
            requirement = requirement_class(line)
            if wanted(requirement, new_extras):
                pending.append((normalize(requirement.name), set(requirement.extras), True, f"required by {name}"))
    violations = [{"distribution": d.metadata["Name"], "version": d.version,
                   "reason": "installed by hand? add it to scripts/requirements.txt"}
                  for name, d in sorted(installed.items()) if name not in allowed]
    return {"distributions": len(installed), "interpreter": sys.executable,
            "allowed": {name: allowed[name] for name in sorted(installed) if name in allowed},
            "violations": violations}


def run_python_report(args):
    """python_report() under the venv's interpreter, in-process when that is this one."""
    python = os.path.join(args.venv, "bin", "python")
    if not os.path.exists(python):
        raise UsageError(f"{python} not found: create the venv first (scripts/setup.sh)")
    if os.path.realpath(sys.prefix) == os.path.realpath(args.venv):
        return python_report(args.requirements, args.requirements_nodeps)
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import check_deps\n"
            "try:\n"
            "    print(json.dumps(check_deps.python_report(*json.loads(sys.argv[2]))))\n"
            "except check_deps.UsageError as e:\n"
            "    sys.exit(f'error: {e}')\n")
    run = subprocess.run([python, "-c", code, os.path.dirname(os.path.abspath(__file__)),
                          json.dumps([args.requirements, args.requirements_nodeps])], capture_output=True, text=True)
    if run.returncode != 0:
        raise UsageError(f"the Python check under {python} failed: {run.stderr.strip()}")
    return json.loads(run.stdout)


# --- report ----------------------------------------------------------------------------------------

def print_report(report):
    debian, python = report["debian"], report["python"]
    by_source = debian["paths_by_source"]
    kinds = {}
    for info in debian["packages_used"].values():
        kinds[info["allowed_as"]] = kinds.get(info["allowed_as"], 0) + 1
    print(f"Debian: {debian['paths_examined']} system paths examined (CMake cache {by_source['cache']}, "
          f"compiled {by_source['compiled']}, linked {by_source['linked']}, venv interpreter {by_source['venv']}; "
          f"{debian['files_and_links_checked']} "
          f"files and links checked), from {len(debian['packages_used'])} packages: "
          + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))
    if debian["listed_not_installed"]:
        print(f"  listed in {os.path.relpath(debian['package_list'], ROOT)} but not installed here: "
              + ", ".join(debian["listed_not_installed"]))
    print(f"Python: {python['distributions']} distributions examined ({python['interpreter']})")

    by_package = {}
    for v in debian["violations"]:
        by_package.setdefault(v["package"], []).append(v)
    # Packages first, then what no package owns.
    for package, found in sorted(by_package.items(), key=lambda item: (item[0] is None, item[0] or "")):
        if package:
            print(f"\npackage {package}: {len(found)} file(s); add it to {os.path.relpath(debian['package_list'], ROOT)}?")
        else:
            print(f"\nno Debian package: {len(found)} file(s); make the build not find them, or install "
                  "them through scripts/setup.sh (a Debian package, or PyPI into the venv)")
        for v in found[:FILES_SHOWN_PER_PACKAGE]:
            owner = f"  (package {package})" if package else ""
            seen = f"via {v['seen_as']}, " if v["seen_as"] != v["file"] else ""
            print(f"  {v['file']}{owner}: {v['reason']}  [{seen}{v['seen_in']}]")
        if len(found) > FILES_SHOWN_PER_PACKAGE:
            print(f"  ... and {len(found) - FILES_SHOWN_PER_PACKAGE} more (--json lists all)")
    if python["violations"]:
        print()
    for v in python["violations"]:
        print(f"Python distribution {v['distribution']} {v['version']}: {v['reason']}")

    unowned = len(by_package.get(None, []))
    problems = [f"{len(debian['violations']) - unowned} file(s) from {len(by_package) - bool(unowned)} "
                "package(s) neither in the setup list's closure nor in the base system",
                f"{unowned} file(s) from no Debian package",
                f"{len(python['violations'])} Python distribution(s) outside the requirements"]
    verdict = "OK" if report["ok"] else "FAILED"
    print(f"\ncheck_deps: {verdict}: " + "; ".join(problems) + f" ({report['seconds']:.1f} s)")


def main(argv=None):
    started = time.monotonic()
    args = parse_args(argv)
    try:
        report = {"debian": debian_report(args), "python": run_python_report(args)}
    except UsageError as e:
        print(f"check_deps: error: {e}", file=sys.stderr)
        return 2
    report["ok"] = not (report["debian"]["violations"] or report["python"]["violations"])
    report["seconds"] = round(time.monotonic() - started, 2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
