"""Copy the shared lme4 reference fits into the project's fixture folder, unchanged.

    python tools/import_shared_refs.py [--source ../shared/refs/lme4] [--dest tests/fixtures/lme4]

The shared references (``ref*_<design>.json`` with ``*_complete.csv`` and
``*_missing.csv``) have the same layout as the fixtures made by
``tools/make_lme4_fixtures.R``, so after the copy every lme4 fixture of the project
lives in one folder with one layout and is read by ``tests/lme4_fixtures.py``.
Files are copied byte for byte (without the read-only mode of the source).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "refs" / "lme4"
DEFAULT_DEST = REPO / "tests" / "fixtures" / "lme4"
PATTERNS = ("*.json", "*.csv")


def import_refs(source: Path, dest: Path) -> list[Path]:
    """Copy every JSON and CSV file of ``source`` into ``dest``; return the copies."""
    files = sorted(p for pattern in PATTERNS for p in source.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no *.json or *.csv reference files in {source}")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in files:
        target = dest / src.name
        shutil.copyfile(src, target)
        if not filecmp.cmp(src, target, shallow=False):
            raise OSError(f"copy of {src} differs from its source")
        copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help=f"shared reference folder (default: {DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST, help=f"fixture folder (default: {DEFAULT_DEST})"
    )
    args = parser.parse_args(argv)
    for path in import_refs(args.source, args.dest):
        print(f"copied {path.name} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
