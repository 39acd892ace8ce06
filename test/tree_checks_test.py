#!/usr/bin/env python3
"""The tree checks fail when they should: scripts/check_layout.py on a small tree that breaks each of
its rules once (and passes once they are fixed), scripts/format.sh --check on a badly formatted file.

  test/tree_checks_test.py WORK_DIR LIZARD_COMMAND...

and the function-length check (LIZARD_COMMAND, as CTest's layout.function_length runs it) on a
function of 130 lines.
"""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_layout  # noqa: E402


def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)
    print("ok:", what)


def write(root: Path, rel: str, text: str):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_tree(root: Path, broken: bool):
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    write(root, "groupvit/CMakeLists.txt", "set(GROUPVIT_PUBLIC_HEADERS\n  groupvit.h\n  formats/a.h\n  model/m.h)\n")
    write(root, "groupvit/groupvit.h", '// facade\n#include "groupvit/formats/a.h"\n#include "groupvit/model/m.h"\n'
          + ('#include "groupvit/model/internal.h"\n' if broken else ""))
    write(root, "groupvit/formats/a.h", "// a format\n" + ("#include <torch/torch.h>\n" if broken else "#include <string>\n"))
    write(root, "groupvit/formats/a.cpp", '#include "groupvit/formats/a.h"\n'
          + ('#include "groupvit/model/m.h"\n' if broken else ""))
    write(root, "groupvit/formats/b.h", ("// b\n" if broken else "// Internal header: b\n"))
    write(root, "groupvit/model/m.h", '// a module\n#include "groupvit/formats/a.h"\n')
    write(root, "groupvit/model/internal.h", "// Internal header: detail\n")
    write(root, "groupvit/model/m.cpp", '#include "groupvit/model/internal.h"\n'
          + ("#include <opencv2/core.hpp>\n" if broken else ""))
    write(root, "apps/main.cpp", '#include "groupvit/groupvit.h"\n'
          + ('#include "groupvit/model/internal.h"\n' if broken else ""))
    rows = ["groupvit/", "groupvit/formats/", "apps/"] + ([] if broken else ["groupvit/model/"])
    write(root, "README.md", "# x\n\n## Layout\n\n" + "".join(f"| `{r}` | x |\n" for r in rows) + "\n## Next\n\n`groupvit/model/`\n")


def main():
    work = Path(sys.argv[1])
    tree = work / "tree"
    make_tree(tree, broken=True)
    faults = check_layout.check(tree)
    print("\n".join(faults))
    expected = {
        "a layer including one below it": "groupvit/formats/a.cpp: includes groupvit/model/m.h",
        "LibTorch in a LibTorch-free layer": "groupvit/formats/a.h: includes <torch/torch.h>",
        "OpenCV outside image/": "groupvit/model/m.cpp: includes <opencv2/core.hpp>",
        "a header neither public nor marked internal": "groupvit/formats/b.h: neither in GROUPVIT_PUBLIC_HEADERS",
        "a public header including an internal one": "groupvit/groupvit.h: public header includes the internal",
        "the CLI including an internal header": "apps/main.cpp: includes the library's internal header",
        "a folder missing from the README table (a mention outside the table does not count)":
            "README.md: the Layout table has no row for groupvit/model/",
    }
    for what, text in expected.items():
        check(any(text in f for f in faults), f"check_layout reports {what}")
    check(len(faults) == len(expected), f"check_layout reports nothing else ({len(faults)} faults)")
    make_tree(tree, broken=False)
    faults = check_layout.check(tree)
    check(faults == [], f"check_layout passes the fixed tree {faults}")
    r = subprocess.run([sys.executable, str(ROOT / "scripts/check_layout.py"), "--root", str(tree)])
    check(r.returncode == 0, "check_layout.py exits 0 on it")

    # CMake's link check: a LibTorch-free target that reaches "torch" through another target.
    for linked in (True, False):
        proj = work / ("cmake-linked" if linked else "cmake-clean")
        shutil.rmtree(proj, ignore_errors=True)
        proj.mkdir(parents=True)
        (proj / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.22)
project(layering LANGUAGES NONE)
include({ROOT}/cmake/GroupViTLayering.cmake)
add_library(torch INTERFACE)  # stands for LibTorch's imported target
add_library(middle INTERFACE)
{"target_link_libraries(middle INTERFACE torch)" if linked else ""}
add_library(groupvit_formats INTERFACE)
target_link_libraries(groupvit_formats INTERFACE middle)
groupvit_check_layering(groupvit_formats)
""")
        r = subprocess.run(["cmake", "-S", str(proj), "-B", str(proj / "build")], capture_output=True, text=True)
        if linked:
            check(r.returncode != 0 and "layering: groupvit_formats must not link torch (via middle)" in r.stderr,
                  "configure fails when a LibTorch-free layer links LibTorch through another target")
        else:
            check(r.returncode == 0, "configure passes without that link")

    lizard = sys.argv[2:]
    if lizard:
        long_dir = work / "long"
        long_dir.mkdir(parents=True, exist_ok=True)
        body = "".join(f"  x += {i};\n" for i in range(128))
        (long_dir / "long.cpp").write_text("int long_function(int x) {\n" + body + "  return x;\n}\n")
        r = subprocess.run(lizard + [str(long_dir)], capture_output=True, text=True)
        check(r.returncode != 0 and "long_function" in r.stdout, "the function-length check fails on 130 lines")
        (long_dir / "long.cpp").write_text("int short_function(int x) {\n" + body[:1000] + "  return x;\n}\n")
        r = subprocess.run(lizard + [str(long_dir)], capture_output=True, text=True)
        check(r.returncode == 0, "and passes a short function")

    fmt = work / "format"
    fmt.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / ".clang-format", fmt / ".clang-format")
    bad = fmt / "bad.cpp"
    bad.write_text("int  main( ){return 0;}\n")
    r = subprocess.run(["bash", str(ROOT / "scripts/format.sh"), "--check", str(bad)], capture_output=True, text=True)
    check(r.returncode == 1 and "not formatted: " + str(bad) in r.stdout, "format.sh --check fails on a misformatted file")
    subprocess.run(["bash", str(ROOT / "scripts/format.sh"), str(bad)], check=True, capture_output=True)
    r = subprocess.run(["bash", str(ROOT / "scripts/format.sh"), "--check", str(bad)], capture_output=True, text=True)
    check(r.returncode == 0, "format.sh fixes it and the check then passes")


if __name__ == "__main__":
    main()
