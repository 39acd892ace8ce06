#!/usr/bin/env python3
"""Tests scripts/check_deps.py against a real configured and built tree:

  test/check_deps_test.py BUILD_DIR

  1. the real package and requirements lists: exit 0, and system files were really examined;
  2. a Debian package list lacking a package whose files the build uses: exit 1, naming the package
     and one of its files;
  3. a requirements file lacking a requirement nothing else depends on: exit 1, naming it;
  4. a copy of the build whose CMake cache names a file no Debian package owns (as a find_library
     result under /usr/local would): exit 1, naming the file.

The packages dropped in 2 and 3 are chosen from what this machine has, with dpkg's and the venv's
own metadata rather than the check's logic, so that a check that misses them fails here.
Exit status 0 = pass.
"""

import glob
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "scripts", "check_deps.py")
SETUP_SCRIPT = os.path.join(ROOT, "scripts", "setup.sh")
REQUIREMENTS = os.path.join(ROOT, "scripts", "requirements.txt")
VENV = os.path.join(ROOT, ".venv")
NODEPS_REQUIREMENTS = os.path.join(ROOT, "scripts", "requirements-nodeps.txt")

failures = []


def check(build_dir, *options):
    run = subprocess.run([sys.executable, CHECK, "--build-dir", build_dir, *options], capture_output=True, text=True)
    return run.returncode, run.stdout + run.stderr


def expect(condition, what, output=""):
    print(("PASS " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)
        print(output)


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def depended_on_debian():
    """Every name some installed package Depends/Pre-Depends on, virtual ones included."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"[a-z0-9][a-z0-9+.-]+", re.sub(r"\(.*?\)|:[a-z0-9]+", "", out)))


def provides(package):
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Provides}", package], capture_output=True, text=True).stdout
    return set(re.findall(r"[a-z0-9][a-z0-9+.-]+", re.sub(r"\(.*?\)", "", out)))


def setup_packages():
    """The Debian packages scripts/setup.sh installs, as it prints them."""
    return subprocess.run(["bash", SETUP_SCRIPT, "--list-debian-packages"], capture_output=True, text=True,
                          check=True).stdout.split()


def pick_debian_package(used):
    """A package named in the list that no installed package depends on (once dropped from the list,
    nothing else can make it allowed); of those, the one the build uses most files of (headers)."""
    depended = depended_on_debian()
    listed = setup_packages()
    candidates = [p for p in listed if p in used and p not in depended and not provides(p) & depended]
    return max(candidates, key=lambda p: used[p]["files"], default=None)


def requirement_names(path):
    """{normalized name: line} of a requirements file."""
    names = {}
    for line in open(path) if os.path.exists(path) else ():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match:
            names[normalize(match.group(1))] = line
    return names


def pick_requirement():
    """A line of requirements.txt naming a distribution that no installed distribution requires,
    counting a requirement under `extra == "e"` of D whenever D[e] is asked for anywhere (markers
    otherwise taken as true, so this errs towards "required"), and leaving out what the --no-deps
    distributions require (pip does not install that)."""
    site_packages = glob.glob(os.path.join(VENV, "lib", "python*", "site-packages"))
    distributions = list(importlib.metadata.distributions(path=site_packages))
    lines = requirement_names(REQUIREMENTS)
    texts = list(lines.values()) + [r for d in distributions for r in d.requires or []]
    requested_extras = {(normalize(name), normalize(extra.strip()))
                        for name, extras in (re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^]]*)\])?", t).groups() for t in texts)
                        for extra in (extras or "").split(",") if extra.strip()}
    nodeps = requirement_names(NODEPS_REQUIREMENTS)
    required = set()
    for d in distributions:
        name = normalize(d.metadata["Name"])
        for r in d.requires or [] if name not in nodeps else ():
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", r)
            if extra is None or (name, normalize(extra.group(1))) in requested_extras:
                required.add(normalize(re.match(r"[A-Za-z0-9._-]+", r).group(0)))
    name = ([n for n in lines if n not in required] + [None])[0]
    return name, lines.get(name)


def test_real_lists(build_dir):
    rc, output = check(build_dir, "--json")
    try:
        report = json.loads(output)
    except json.JSONDecodeError:
        expect(False, "1. --json prints a report", output)
        return {}
    debian, python = report["debian"], report["python"]
    found = "\n".join([f"  {v['file']} ({v['package'] or 'no package'}): {v['reason']} [{v['seen_in']}]"
                       for v in debian["violations"]]
                      + [f"  {v['distribution']} {v['version']}: {v['reason']}" for v in python["violations"]])
    expect(rc == 0, "1. the real lists pass (exit 0)", found)
    print(f"     {debian['paths_examined']} system paths examined {debian['paths_by_source']}, "
          f"{len(debian['packages_used'])} Debian packages, {python['distributions']} Python distributions, "
          f"{report['seconds']} s")
    expect(debian["paths_by_source"]["compiled"] > 0 and debian["paths_by_source"]["cache"] > 0
           and python["distributions"] > 0, "1. system headers, cache paths and distributions were examined")
    return debian["packages_used"]


def test_missing_debian_package(build_dir, used):
    package = pick_debian_package(used)
    expect(package is not None, "2. found a listed package the build uses that nothing depends on")
    if package is None:
        return
    files = set(subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout.split())
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as short_list:
        short_list.writelines(p + "\n" for p in setup_packages() if p != package)
        short_list.flush()
        rc, output = check(build_dir, "--debian-packages", short_list.name)
    named = [line for line in output.splitlines()
             if f"(package {package})" in line and line.split()[0].rstrip(":") in files]
    expect(rc == 1 and named, f"2. without {package} in the list: exit 1 naming the package and one of its files", output)


def test_missing_requirement(build_dir):
    name, line = pick_requirement()
    expect(name is not None, "3. found a requirement no other distribution requires")
    if name is None:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as short_list:
        short_list.writelines(l for l in open(REQUIREMENTS) if l != line)
        short_list.flush()
        rc, output = check(build_dir, "--requirements", short_list.name)
    named = [l for l in output.splitlines()
             if l.startswith("Python distribution ") and normalize(l.split()[2]) == name]
    expect(rc == 1 and named, f"3. without {name} in requirements.txt: exit 1 naming it", output)


def copy_build_files(build_dir, copy):
    """What the check reads of a build: the cache, the ninja files and ninja's deps log."""
    for name in ["CMakeCache.txt", ".ninja_deps", ".ninja_log"] + glob.glob("*.ninja", root_dir=build_dir) \
            + glob.glob("CMakeFiles/*.ninja", root_dir=build_dir):
        os.makedirs(os.path.dirname(os.path.join(copy, name)), exist_ok=True)
        shutil.copy(os.path.join(build_dir, name), os.path.join(copy, name))


def test_unowned_file(build_dir):
    with tempfile.TemporaryDirectory() as copy, tempfile.NamedTemporaryFile(suffix=".so") as unowned:
        copy_build_files(build_dir, copy)
        with open(os.path.join(copy, "CMakeCache.txt"), "a") as cache:
            cache.write(f"HAND_INSTALLED_LIBRARY:FILEPATH={unowned.name}\n")
        rc, output = check(copy)
    named = [line for line in output.splitlines()
             if line.split()[:1] == [unowned.name + ":"] and "not from any Debian package" in line]
    expect(rc == 1 and named, "4. a cache entry naming a file no package owns: exit 1 naming the file", output)


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} BUILD_DIR")
    build_dir = os.path.abspath(sys.argv[1])
    used = test_real_lists(build_dir)
    test_missing_debian_package(build_dir, used)
    test_missing_requirement(build_dir)
    test_unowned_file(build_dir)
    print(f"{len(failures)} of the checks failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
