"""The version of the code a run used: the package version, the git commit when the source is
a git checkout, and a digest of the installed source itself.

The digest covers every file the tasks import or read (``.py``, rules ``.yaml``, ``.sql``,
``.json``, ``.html`` under ``components/`` and ``pipelines/``), so any edit changes it: it is
part of every task's cache key in ``fareflow run`` and is written into each run's record and
report headers."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

SOURCE_SUFFIXES = (".py", ".yaml", ".sql", ".json", ".html")
PACKAGES = ("components", "pipelines")


def package_roots() -> list[Path]:
    """The directories of the installed ``components`` and ``pipelines`` packages."""
    import importlib

    return [Path(importlib.import_module(name).__file__).parent for name in PACKAGES]


def source_digest(roots: list[Path] | None = None) -> str:
    """SHA-256 over the relative path and bytes of every source file under ``roots``."""
    h = hashlib.sha256()
    for root in roots if roots is not None else package_roots():
        files = sorted(
            p
            for p in root.rglob("*")
            if p.suffix in SOURCE_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
        )
        for path in files:
            h.update(f"{root.name}/{path.relative_to(root).as_posix()}".encode())
            h.update(b"\0")
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@dataclass(frozen=True)
class CodeVersion:
    version: str  # the fareflow package version
    git: str | None  # commit of the checkout the source is in (None: not a git checkout)
    dirty: bool  # the checkout has uncommitted changes under the packages
    digest: str  # source_digest()

    def label(self) -> str:
        """``0.1.0 git 03f24ce+dirty src 1a2b3c4d5e6f``: short, and enough to find the code."""
        git = f" git {self.git[:7]}{'+dirty' if self.dirty else ''}" if self.git else ""
        return f"{self.version}{git} src {self.digest[:12]}"

    def as_dict(self) -> dict:
        return asdict(self)


@functools.cache
def code_version() -> CodeVersion:
    from components.common.images import VERSION

    roots = package_roots()
    top = roots[0].parent
    sha = _git(top, "rev-parse", "HEAD")
    dirty = bool(sha and _git(top, "status", "--porcelain", "--", *PACKAGES))
    return CodeVersion(version=VERSION, git=sha, dirty=dirty, digest=source_digest(roots))
