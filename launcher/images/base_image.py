"""A local base image (no registry reachable): Debian minbase made with debootstrap, cached."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from launcher.images import ImageBuildError
from launcher.images.builders import BUILDAH_DEFAULT_ENV

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def cache_dir() -> Path:
    """RLAUNCH_CACHE_DIR, else /var/cache/rlaunch for root, else $XDG_CACHE_HOME/rlaunch."""
    if os.environ.get("RLAUNCH_CACHE_DIR"):
        return Path(os.environ["RLAUNCH_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/rlaunch")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "rlaunch"


def local_base_name(suite: str = DEBIAN_SUITE, mirror: str = DEBIAN_MIRROR) -> str:
    """Image name keyed by the recipe, so a changed recipe never reuses a stale base."""
    recipe = {"tool": "debootstrap", "variant": "minbase", "suite": suite, "mirror": mirror,
              "arch": os.uname().machine, "recipe": 1}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"localhost/rlaunch-base:debian-{suite}-minbase-{key}"


def _image_exists(builder: str, name: str, env: Mapping[str, str]) -> bool:
    argv = ([builder, "image", "inspect", name] if builder in ("docker", "podman")
            else ["buildah", "inspect", "--type", "image", name])
    done = subprocess.run(argv, check=False, capture_output=True, env={**os.environ, **env})
    return done.returncode == 0


def ensure_local_base(builder: str, log: Callable[[str], None] = print) -> str:
    """A Debian bookworm minbase image made with debootstrap, cached in the builder's storage
    and as a rootfs tarball under cache_dir(); returns its name. Needs root (debootstrap)."""
    name = local_base_name()
    env = ({k: os.environ.get(k, v) for k, v in BUILDAH_DEFAULT_ENV.items()}
           if builder == "buildah" else {})
    if _image_exists(builder, name, env):
        log(f"local base: {name} (cached)")
        return name
    tarball = cache_dir() / f"{name.split(':', 1)[1]}.tar"
    if not tarball.is_file():
        if shutil.which("debootstrap") is None:
            raise ImageBuildError("--local-base needs debootstrap (apt-get install debootstrap)")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
            rootfs = Path(tmp) / "rootfs"
            log(f"local base: debootstrap --variant=minbase {DEBIAN_SUITE} (about a minute)")
            _check_run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs),
                        DEBIAN_MIRROR], "debootstrap")
            partial = Path(tmp) / "rootfs.tar"
            _check_run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
                       "tar")
            partial.replace(tarball)
    log(f"local base: importing {tarball} as {name}")
    if builder == "buildah":
        full_env = {**os.environ, **env}
        ctr = subprocess.run(["buildah", "from", "scratch"], capture_output=True, text=True,
                             env=full_env, check=True).stdout.strip()
        try:
            _check_run(["buildah", "add", ctr, str(tarball), "/"], "buildah add", full_env)
            _check_run(["buildah", "config", "--cmd", "/bin/bash", ctr], "buildah config",
                       full_env)
            _check_run(["buildah", "commit", "--rm", ctr, name], "buildah commit", full_env)
        except ImageBuildError:
            subprocess.run(["buildah", "rm", ctr], check=False, capture_output=True,
                           env=full_env)
            raise
    else:
        _check_run([builder, "import", str(tarball), name], f"{builder} import")
    return name


def _check_run(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> None:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise ImageBuildError(f"{what} failed (exit {done.returncode}): {tail}")
