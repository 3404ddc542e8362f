"""Remove top-level packages that a dependency's wheel installs by mistake.

aiohttp-security 0.5.0 (a dev dependency: websession.aiohttp's identity policy is tested
against it) installs its own test suite and demo as the top-level packages ``tests`` and
``demo`` in site-packages. A regular package there wins over this repository's ``tests``
(a namespace package, no ``__init__.py``), so every ``from tests.servers import ...``
would fail; its ``demo`` would shadow ours outside the repository root. ``make`` runs
this after installing. Only a directory whose every file the distribution's own RECORD
lists (or compiled bytecode) is removed.
"""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

#: distribution -> the top-level names it should not have installed.
STRAY = {"aiohttp-security": ("tests", "demo")}


def prune(dist_name: str, names: tuple[str, ...]) -> None:
    """Remove ``names`` from site-packages if ``dist_name`` installed all of them."""
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        return
    owned = {Path(str(dist.locate_file(f))).resolve() for f in dist.files or ()}
    for name in names:
        folder = Path(str(dist.locate_file(name))).resolve()
        if not folder.is_dir():
            continue
        foreign = [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".pyc"
                   and p.resolve() not in owned]
        if foreign:
            print(f"prune: {folder} holds files {dist_name} did not install; kept",
                  file=sys.stderr)
            continue
        shutil.rmtree(folder)
        print(f"prune: removed {folder}, installed by {dist_name} by mistake")


def main() -> None:
    """Prune every known stray package."""
    for dist_name, names in STRAY.items():
        prune(dist_name, names)


if __name__ == "__main__":
    main()
