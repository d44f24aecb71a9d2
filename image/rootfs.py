"""The image's root filesystem, assembled in a directory from Debian packages, the locked wheels and k3sreg.

    /usr/bin/python3.11, /usr/lib/python3.11 (trimmed), /lib, /usr/lib/x86_64-linux-gnu   Debian 12
    /usr/local/lib/python3.11/dist-packages/<deps>                                       uv.lock (no-dev)
    /usr/local/lib/python3.11/dist-packages/k3sreg, k3sreg-<v>.dist-info, /usr/local/bin/k3sreg
    /etc/k3sreg/config.yml    default config: filesystem storage under /var/lib/registry, :5000
    /etc/passwd, /etc/group   root and k3sreg (65532:65532), no login shell
    /var/lib/registry         the only directory the user owns (a volume); /tmp is 1777 for --workers

Bytecode is compiled inside the tree by its own python3.11 (chroot), with unchecked-hash .pyc files and
PYTHONHASHSEED=0, so the same sources always give the same bytes. Every ELF file's libraries are then looked
up with the tree's own loader: extension modules of the standard library whose library is not in the image
(sqlite3, curses, dbm, readline, nis, crypt) are removed; any other missing library fails the build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from k3sreg.kube.config import STORAGE as STORAGE_PATH
from k3sreg.kube.config import container_config
from k3sreg.kube.spec import RUN_AS

UID = GID = RUN_AS
USER = "k3sreg"
STORAGE = STORAGE_PATH.lstrip("/")
SITE = "usr/local/lib/python3.11/dist-packages"
STDLIB = "usr/lib/python3.11"
PYTHON = "/usr/bin/python3.11"
SCRIPT = "usr/local/bin/k3sreg"
CONFIG = "etc/k3sreg/config.yml"

DEFAULT_CONFIG = (
    "# k3sreg in a container: `k3sreg serve /etc/k3sreg/config.yml` (the image's CMD). Replace this file\n"
    "# (a ConfigMap, `podman run -v`) or override keys with REGISTRY_<SECTION>_<KEY> variables.\n"
    + yaml.safe_dump(container_config(), sort_keys=False, default_flow_style=False)
)

PRUNE = (
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale",
    "usr/share/binfmts", "usr/lib/binfmt.d", "usr/share/bug", "usr/share/gcc", "usr/share/gdb",
    "usr/lib/x86_64-linux-gnu/gconv",            # iconv modules: Python has its own codecs
    "usr/share/ca-certificates",                   # folded into /etc/ssl/certs/ca-certificates.crt
    "etc/ca-certificates.conf", "usr/sbin",         # update-ca-certificates: a shell script
    f"{STDLIB}/test", f"{STDLIB}/idlelib", f"{STDLIB}/lib2to3", f"{STDLIB}/ensurepip", f"{STDLIB}/turtledemo",
    f"{STDLIB}/tkinter", f"{STDLIB}/turtle.py", f"{STDLIB}/pydoc_data", f"{STDLIB}/sqlite3", f"{STDLIB}/curses",
    f"{STDLIB}/venv", f"{STDLIB}/unittest/test", f"{STDLIB}/EXTERNALLY-MANAGED",
)
_TEST_EXTENSIONS = re.compile(r"^(_test\w*|_ctypes_test|_xxtestfuzz|xxlimited\w*|_xxsubinterpreters)\.cpython-")
_DEP_JUNK = re.compile(r"(\.pyi|\.pyx|\.pxd|\.pxi|\.c|\.h)$")


def run_in(root: Path, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` with `root` as its root directory (chroot as root, else in a user namespace)."""
    prefix = ([shutil.which("chroot") or "/usr/sbin/chroot", str(root)] if os.geteuid() == 0
              else [shutil.which("unshare") or "/usr/bin/unshare", "--map-root-user", f"--root={root}"])
    full_env = {"PATH": "/usr/local/bin:/usr/bin", "LC_ALL": "C", **(env or {})}
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, env=full_env, check=False)


def prune_debian(root: Path) -> None:
    """Drop documentation, locales, iconv modules and the parts of the standard library nothing runs."""
    for rel in PRUNE:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    dynload = root / STDLIB / "lib-dynload"
    for ext in dynload.iterdir():
        if _TEST_EXTENSIONS.match(ext.name):
            ext.unlink()


def ca_bundle(root: Path, certificates: Path) -> None:
    """Write /etc/ssl/certs/ca-certificates.crt from the package's certificates, where OpenSSL looks for it.

    update-ca-certificates (a shell script run by dpkg) normally does this; the order here is by file name.
    """
    pems = sorted(certificates.rglob("*.crt"))
    if not pems:
        raise RuntimeError(f"no CA certificates under {certificates}")
    certs = root / "etc/ssl/certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "ca-certificates.crt").write_bytes(b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in pems))
    ssl_dir = root / "usr/lib/ssl"
    ssl_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("cert.pem", "/etc/ssl/certs/ca-certificates.crt"), ("certs", "/etc/ssl/certs")):
        link = ssl_dir / name
        if not link.is_symlink():
            link.symlink_to(target)


def system_files(root: Path) -> None:
    """Users, name service switch, the writable directories."""
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                                f"{USER}:x:{UID}:{GID}:{USER}:/{STORAGE}:/usr/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\n{USER}:x:{GID}:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    (root / STORAGE).mkdir(parents=True, exist_ok=True)
    (root / STORAGE).chmod(0o755)
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def install_requirements(root: Path, requirements: Path, uv: str) -> None:
    """Install the locked wheels (manylinux, CPython 3.11) into the image's dist-packages, without bytecode."""
    target = root / SITE
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [uv, "pip", "install", "--quiet", "--target", str(target), "--python-version", "3.11",
         "--python-platform", "x86_64-manylinux_2_36", "--no-deps", "--require-hashes", "--no-compile",
         "--no-build", "--link-mode", "copy", "-r", str(requirements)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"uv pip install into the image failed:\n{proc.stderr[-2000:]}")
    for path in sorted(target.rglob("*")):
        if path.is_dir() and path.name in ("tests", "test") and not (path / "__init__.py").exists():
            shutil.rmtree(path)
        elif path.is_file() and (_DEP_JUNK.search(path.name) or path.name in ("INSTALLER", "REQUESTED")):
            path.unlink()
        elif path.is_file() and path.name == "RECORD":
            # RECORD lists files removed above; a stale line would mislead tools that verify it.
            path.unlink()
    shutil.rmtree(target / "bin", ignore_errors=True)
    strip_debug(target)


def strip_debug(tree: Path) -> None:
    """Remove debug sections from the wheels' extension modules (uvloop's alone carries 11 MiB of them)."""
    strip = shutil.which("strip")
    if strip is None:
        raise RuntimeError("strip (Debian package binutils) is needed to build the image")
    objects = sorted(str(p) for p in tree.rglob("*.so") if p.is_file() and not p.is_symlink())
    if objects:
        subprocess.run([strip, "--strip-debug", *objects], check=True, capture_output=True)


def install_k3sreg(root: Path, src: Path, version: str) -> None:
    """Copy the k3sreg package, a minimal dist-info, the `k3sreg` command and the default config."""
    site = root / SITE
    shutil.copytree(src, site / "k3sreg", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    info = site / f"k3sreg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: k3sreg\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nk3sreg = k3sreg.cli.main:run\n")
    (info / "top_level.txt").write_text("k3sreg\n")
    script = root / SCRIPT
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!{PYTHON}\nimport sys\n\nfrom k3sreg.cli.main import run\n\nsys.exit(run())\n")
    script.chmod(0o755)
    config = root / CONFIG
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(DEFAULT_CONFIG)


def compile_bytecode(root: Path) -> None:
    """Compile every module once, inside the tree, deterministically (see the module docstring)."""
    proc = run_in(root, [PYTHON, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                         f"/{STDLIB}", f"/{SITE}"], env={"PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise RuntimeError(f"compileall failed in the image tree:\n{(proc.stdout + proc.stderr)[-2000:]}")


def _elf_files(root: Path) -> list[Path]:
    out = []
    for base in ("lib", "usr"):
        for path in sorted((root / base).rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            if ".so" in path.name or path.parent.name == "bin":
                with path.open("rb") as f:
                    if f.read(4) == b"\x7fELF":
                        out.append(path)
    return out


def check_libraries(root: Path) -> list[str]:
    """Resolve each ELF file's libraries with the tree's loader; drop stdlib extensions that cannot load.

    Returns the removed extensions; raises RuntimeError naming any other file with a missing library.
    """
    removed, broken = [], []
    for path in _elf_files(root):
        rel = "/" + str(path.relative_to(root))
        proc = run_in(root, ["/lib64/ld-linux-x86-64.so.2", "--list", rel])
        missing = [line.split()[0] for line in proc.stdout.splitlines() if "not found" in line]
        if not missing and proc.returncode == 0:
            continue
        if rel.startswith(f"/{STDLIB}/lib-dynload/"):
            path.unlink()
            removed.append(path.name.split(".")[0])
        else:
            broken.append(f"{rel}: {', '.join(missing) or proc.stderr.strip()}")
    if broken:
        raise RuntimeError("libraries missing from the image: " + "; ".join(broken))
    return removed
