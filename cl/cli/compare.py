"""``cl compare RUN_DIR [RUN_DIR ...]``: several runs side by side (Markdown table and a figure)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="runs side by side, seeds aggregated (Markdown, CSV, figure)",
        description="One table per protocol (stream and its options, class order, backbone "
                    "weights, image transform, memory budget), named in its header; in it one "
                    "row per group of runs that differ only by seed: strategy and its options, "
                    "n, metrics as mean ± std over seeds (%), training seconds and FLOPs, memory "
                    "carried between tasks. Each run (config without out, seed, code) is counted "
                    "once; only finished runs are aggregated, the others are listed with their "
                    "state (as cl sweep --status reads it).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories written by cl run, or directories holding them (a sweep)")
    p.add_argument("--out", metavar="FILE.md", help="also write the table to this Markdown file")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write the figure (metrics per run, accuracy vs memory): .png, .pdf or .svg")
    p.add_argument("--metrics", metavar="A,B",
                   help="comma-separated metric keys to show (default: all the scenario defines), "
                        "e.g. average_accuracy,forgetting,mtil_transfer")
    p.add_argument("--csv", metavar="FILE.csv", help="also write the table as CSV (fractions)")
    p.add_argument("--per-seed", action="store_true", help="add one row per run under its group")
    p.add_argument("--over", metavar="KEY,KEY", default="seed",
                   help="setting keys aggregated over besides the seed, e.g. seed,strategy.lr; "
                        "keys of the protocol (stream.*, backbone, memory budgets) are refused: "
                        "to report over class orders run with stream.class_order_seed=run")
    p.add_argument("--allow-modified", action="store_true",
                   help="use a results.json that fails its checksum (edited or damaged)")
    p.add_argument("--memory", action="store_true",
                   help="memory-aligned view: runs at their memory, which keep exemplars, and "
                        "AUC-A/AUC-L per method over its budgets (cl.reporting.memory)")
    p.add_argument("--image-bytes", type=int, metavar="N",
                   help="with --memory: also charge each exemplar as a stored image of N bytes "
                        "(the survey: 3072 for CIFAR, 150528 for 224px)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if args.memory:
        from cl.reporting.memory import memory_view

        print(memory_view(args.run_dirs, image_bytes=args.image_bytes,
                          allow_modified=args.allow_modified), end="")
        return 0
    from cl.reporting.compare import compare

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    text = compare(args.run_dirs, out=args.out, plot=args.plot, metrics=metrics, csv_path=args.csv,
                   per_seed=args.per_seed,
                   over=[k.strip() for k in args.over.split(",") if k.strip()],
                   allow_modified=args.allow_modified)
    print(text, end="")
    for label, path in (("table", args.out), ("csv", args.csv), ("figure", args.plot)):
        if path:
            print(f"{label}: {path}")
    return 0
