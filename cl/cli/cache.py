"""``cl cache ls|clear``: inspect and empty the on-disk feature cache."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cache", help="list or clear cached backbone features")
    p.add_argument("action", choices=("ls", "clear"), help="ls: list entries; clear: delete them")
    p.add_argument("--cache-dir", help="cache directory (default $CL_CACHE_DIR or user cache)")
    p.set_defaults(func=handle)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def handle(args: argparse.Namespace) -> int:
    from cl.models.features import FeatureCache

    cache = FeatureCache(args.cache_dir)
    if args.action == "clear":
        files, freed = cache.clear()
        print(f"removed {files} files ({_size(freed)}) from {cache.dir}")
        return 0
    entries = cache.entries()
    print(f"{cache.dir}: {len(entries)} entries, "
          f"{_size(sum(e.get('bytes', 0) for e in entries))}")
    for e in entries:
        key = e.get("key", {})
        print(f"  {e.get('created', '?'):20}  {e.get('backbone_name', '?'):24}  "
              f"{key.get('dataset', '?')} [{key.get('split', '?')}]  "
              f"{e.get('n', '?')}x{e.get('dim', '?')}  {_size(e.get('bytes', 0))}")
    return 0
