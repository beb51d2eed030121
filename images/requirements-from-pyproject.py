"""Print the pinned requirements of pyproject.toml (one per line) for a Docker layer.

Usage: python requirements-from-pyproject.py PYPROJECT [EXTRA ...]

Reads [project].dependencies plus the named optional-dependency groups and fails
(exit 1, naming the offending entries) when one is not pinned with ``==``: the images
install exactly the versions the project pins, so the dependency layer only changes
when pyproject.toml does. Standard library only (it runs before anything is installed).
"""

from __future__ import annotations

import re
import sys
import tomllib

PINNED = re.compile(r"^[A-Za-z0-9._-]+(\[[A-Za-z0-9._,-]+\])?==[^,;\s]+(\s*;.*)?$")


def requirements(pyproject: dict, extras: list[str]) -> list[str]:
    project = pyproject["project"]
    reqs = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"requirements-from-pyproject: no extra {extra!r}; known: {sorted(optional)}")
        reqs += optional[extra]
    return reqs


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], "rb") as f:
        reqs = requirements(tomllib.load(f), argv[1:])
    unpinned = [r for r in reqs if not PINNED.match(r.strip())]
    if unpinned:
        print(f"{argv[0]}: requirements not pinned with '==': {', '.join(unpinned)}", file=sys.stderr)
        return 1
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
