"""``cl compare RUN_DIR [RUN_DIR ...]``: several runs side by side (Markdown table and a figure)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="put several runs side by side (Markdown table, optional figure)",
        description="One row per run directory: stream, strategy, backbone, seed, metrics (%), "
                    "training seconds and FLOPs, memory carried between tasks.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by cl run")
    p.add_argument("--out", metavar="FILE.md", help="also write the table to this Markdown file")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write the figure (metrics per run, accuracy vs memory): .png, .pdf or .svg")
    p.add_argument("--metrics", metavar="A,B",
                   help="comma-separated metric keys to show (default: all), e.g. "
                        "average_accuracy,forgetting,mtil_transfer")
    p.add_argument("--allow-modified", action="store_true",
                   help="use a results.json that fails its checksum (edited or damaged)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from cl.reporting.compare import compare

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    text = compare(args.run_dirs, out=args.out, plot=args.plot, metrics=metrics,
                   allow_modified=args.allow_modified)
    print(text, end="")
    for label, path in (("table", args.out), ("figure", args.plot)):
        if path:
            print(f"{label}: {path}")
    return 0
