"""`make image`: build the k3sreg OCI image from Debian 12 packages and uv.lock, with no registry and no daemon.

    python -m image.build [--dist dist] [--cache .cache/image] [--no-cache] [--uv PATH]

Inputs: the machine's apt sources (package versions and SHA-256s), uv.lock (exported without dev packages),
src/k3sreg, these build scripts, the commit (revision label) and SOURCE_DATE_EPOCH (default: the commit time).
The same inputs give the same image digest. A finished build is kept under the cache, keyed by a hash of all
the inputs, and reused; downloaded .debs are kept there too. Outputs: dist/k3sreg-<v>.oci.tar and
dist/k3sreg-<v>.docker.tar. Layers, bottom up: Debian, the Python dependencies, k3sreg itself.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from image import debian, oci, rootfs
from k3sreg.kube.spec import IMAGE_NAME

REPO = Path(__file__).resolve().parent.parent
KEEP_BUILDS = 3


@dataclass(frozen=True)
class Built:
    """A finished build: where its layout and archives are, and what it is."""

    key: str
    version: str
    revision: str
    created: int
    digest: str
    config_digest: str
    layer_sizes: list[int]
    layout: str
    oci_archive: str
    docker_archive: str
    removed_extensions: list[str]

    @property
    def compressed_size(self) -> int:
        """What a pull transfers: the gzip layers (the config and manifest are a few KiB)."""
        return sum(self.layer_sizes)

    @property
    def reference(self) -> str:
        return f"{IMAGE_NAME}:{self.version}"


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _tree_hash(base: Path, patterns: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for pattern in patterns:
        for path in sorted(base.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _source_url(repo: Path) -> str:
    url = os.environ.get("K3SREG_IMAGE_SOURCE") or _git(repo, "remote", "get-url", "origin")
    if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        scheme, _, rest = url.partition("//")
        url = f"{scheme}//{rest.split('@', 1)[1]}"  # never put credentials into a label
    return url


def _requirements(repo: Path, uv: str) -> str:
    proc = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--no-annotate", "--quiet"],
        cwd=repo, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"uv export failed: {proc.stderr.strip()[-1000:]}")
    return proc.stdout


@dataclass(frozen=True)
class Inputs:
    """Everything the image's bytes depend on."""

    version: str
    revision: str
    created: int
    source: str
    requirements: str
    debs: list[debian.Deb]
    src_hash: str
    build_hash: str

    def key(self) -> str:
        doc = asdict(self)
        return hashlib.sha256(oci.canonical_json(doc)).hexdigest()[:24]


def gather(repo: Path, uv: str) -> Inputs:
    """Read the inputs of a build (apt-cache and uv export are asked; nothing is downloaded)."""
    version = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"]
    revision = _git(repo, "rev-parse", "HEAD")
    sde = os.environ.get("SOURCE_DATE_EPOCH") or _git(repo, "log", "-1", "--format=%ct")
    if not sde.isdigit():
        raise RuntimeError("set SOURCE_DATE_EPOCH (seconds since 1970): this is not a git checkout with commits")
    return Inputs(
        version=version,
        revision=revision or "unknown",
        created=int(sde),
        source=_source_url(repo),
        requirements=_requirements(repo, uv),
        debs=debian.resolve(),
        src_hash=_tree_hash(repo / "src/k3sreg", ("**/*",)),
        build_hash=_tree_hash(repo / "image", ("*.py",)),
    )


def _layer_of(rel: str) -> int:
    site = rootfs.SITE + "/"
    if rel.startswith((site + "k3sreg/", site + "k3sreg-", rootfs.SCRIPT, "etc/k3sreg")):
        return 2
    if rel.startswith(site):
        return 1
    return 0


def _entries(root: Path) -> list[list[str]]:
    """Every file, symlink and empty directory of `root`, split into the three layers (with parents added)."""
    picked: list[list[str]] = [[], [], []]
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = str(base.relative_to(root))
        leaves = [n for n in dirnames if (base / n).is_symlink()] + filenames
        if not dirnames and not filenames and rel_dir != ".":
            picked[_layer_of(rel_dir)].append(rel_dir)
        for name in leaves:
            rel = str((base / name).relative_to(root))
            picked[_layer_of(rel)].append(rel)
    return [oci.walk(root, names) for names in picked]


def _image_config(inputs: Inputs, diff_ids: list[str]) -> dict[str, Any]:
    created = datetime.datetime.fromtimestamp(inputs.created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {
        "org.opencontainers.image.title": "k3sreg",
        "org.opencontainers.image.description": "OCI registry and pull-through cache for K3s clusters",
        "org.opencontainers.image.version": inputs.version,
        "org.opencontainers.image.revision": inputs.revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": "debian:12 (packages, unpacked)",
    }
    if inputs.source:
        labels["org.opencontainers.image.source"] = inputs.source
    steps = ("Debian 12 packages: " + ", ".join(f"{d.name}={d.version}" for d in inputs.debs),
             "Python dependencies from uv.lock", f"k3sreg {inputs.version}")
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": f"{rootfs.UID}:{rootfs.GID}",
            "Env": ["PATH=/usr/local/bin:/usr/bin", "PYTHONDONTWRITEBYTECODE=1"],
            "Entrypoint": ["k3sreg"],
            "Cmd": ["serve", "/" + rootfs.CONFIG],
            "WorkingDir": "/" + rootfs.STORAGE,
            "ExposedPorts": {"5000/tcp": {}},
            "Volumes": {"/" + rootfs.STORAGE: {}},
            "StopSignal": "SIGTERM",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": f"image/build.py: {step}"} for step in steps],
    }


def assemble(inputs: Inputs, repo: Path, cache: Path, work: Path, uv: str) -> list[str]:
    """Fill `work/root` with the image's files; returns the standard-library extensions that were dropped."""
    root, scratch = work / "root", work / "scratch"
    root.mkdir()
    scratch.mkdir()
    paths = debian.fetch(inputs.debs, cache / "debs")
    for deb, path in zip(inputs.debs, paths, strict=True):
        debian.unpack(deb, path, root, scratch)
    rootfs.ca_bundle(root, root / "usr/share/ca-certificates")
    rootfs.prune_debian(root)
    rootfs.system_files(root)
    requirements = work / "requirements.txt"
    requirements.write_text(inputs.requirements)
    rootfs.install_requirements(root, requirements, uv)
    rootfs.install_k3sreg(root, repo / "src/k3sreg", inputs.version)
    removed = rootfs.check_libraries(root)
    rootfs.compile_bytecode(root)
    return removed


def _write(inputs: Inputs, root: Path, out: Path, removed: list[str]) -> Built:
    layout = out / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    owners = {rootfs.STORAGE: (rootfs.UID, rootfs.GID)}
    layers = [oci.write_layer(root, names, inputs.created, blobs, owners) for names in _entries(root)]
    config = _image_config(inputs, [layer.diff_id for layer in layers])
    annotations = {k: v for k, v in config["config"]["Labels"].items()
                   if k.rsplit(".", 1)[-1] in ("version", "revision", "created", "source")}
    image = oci.finish_layout(layout, config, layers, inputs.version, f"{IMAGE_NAME}:{inputs.version}", annotations)
    oci_archive = out / f"k3sreg-{inputs.version}.oci.tar"
    docker_archive = out / f"k3sreg-{inputs.version}.docker.tar"
    oci.write_oci_archive(image, oci_archive, inputs.created)
    oci.write_docker_archive(image, docker_archive, inputs.created)
    built = Built(
        key=inputs.key(), version=inputs.version, revision=inputs.revision, created=inputs.created,
        digest=image.manifest.digest, config_digest=image.config.digest,
        layer_sizes=[layer.descriptor.size for layer in layers], layout=str(layout),
        oci_archive=str(oci_archive), docker_archive=str(docker_archive), removed_extensions=removed,
    )
    (out / "built.json").write_text(json.dumps(asdict(built), indent=2) + "\n")
    return built


def _load(out: Path) -> Built | None:
    try:
        doc = json.loads((out / "built.json").read_text())
        built = Built(**doc)
    except (OSError, ValueError, TypeError):
        return None
    return built if Path(built.oci_archive).is_file() and Path(built.docker_archive).is_file() else None


def build(repo: Path = REPO, cache: Path | None = None, reuse: bool = True, uv: str | None = None,
          out: Path | None = None) -> Built:
    """Build the image (or reuse the cached build of the same inputs) and return what was built.

    `out` None keeps the build under `cache/builds/<key>`; otherwise it is written to `out` (which must not
    exist) and not cached. `reuse` False always builds, still using the cached .debs.
    """
    cache = cache or repo / ".cache/image"
    uv = uv or os.environ.get("UV") or shutil.which("uv") or str(Path.home() / ".local/bin/uv")
    inputs = gather(repo, uv)
    key = inputs.key()
    builds = cache / "builds"
    final = out or builds / key
    if reuse and out is None and (found := _load(final)) is not None:
        return found
    builds.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=cache))
    try:
        removed = assemble(inputs, repo, cache, work, uv)
        staging = work / "out"
        staging.mkdir()
        built = _write(inputs, work / "root", staging, removed)
        if final.exists() and out is None:
            shutil.rmtree(final)
        shutil.move(staging, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if out is None:
        _prune_builds(builds, keep=final)
    return _relocated(built, Path(built.layout).parent, final)


def _relocated(built: Built, old: Path, new: Path) -> Built:
    def move(p: str) -> str:
        return str(new / Path(p).relative_to(old))
    moved = Built(**{**asdict(built), "layout": move(built.layout), "oci_archive": move(built.oci_archive),
                     "docker_archive": move(built.docker_archive)})
    (new / "built.json").write_text(json.dumps(asdict(moved), indent=2) + "\n")
    return moved


def _prune_builds(builds: Path, keep: Path) -> None:
    older = sorted((p for p in builds.iterdir() if p.is_dir() and p != keep), key=lambda p: p.stat().st_mtime)
    for path in older[: max(0, len(older) - (KEEP_BUILDS - 1))]:
        shutil.rmtree(path, ignore_errors=True)


def publish(built: Built, dist: Path) -> tuple[Path, Path]:
    """Copy the two archives into `dist` (replacing older copies atomically)."""
    dist.mkdir(parents=True, exist_ok=True)
    outs = []
    for src in (Path(built.oci_archive), Path(built.docker_archive)):
        dst = dist / src.name
        tmp = dist / f".{src.name}.tmp"
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
        outs.append(dst)
    return outs[0], outs[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image.build", description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="where the archives go")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache/image", help="builds and .debs kept here")
    parser.add_argument("--no-cache", action="store_true", help="build even when a build of the same inputs exists")
    parser.add_argument("--uv", help="the uv executable (default: $UV, then PATH)")
    args = parser.parse_args(argv)
    try:
        built = build(REPO, args.cache, reuse=not args.no_cache, uv=args.uv)
    except (RuntimeError, debian.AptError, subprocess.CalledProcessError) as e:
        print(f"make image: {e}", file=sys.stderr)
        return 1
    oci_path, docker_path = publish(built, args.dist)
    mib = built.compressed_size / (1 << 20)
    print(f"{built.reference}  {built.digest}")
    print(f"  compressed layers: {mib:.1f} MiB ({', '.join(f'{s / (1 << 20):.1f}' for s in built.layer_sizes)})")
    print(f"  {oci_path}  ({oci_path.stat().st_size / (1 << 20):.1f} MiB)")
    print(f"  {docker_path}  ({docker_path.stat().st_size / (1 << 20):.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
