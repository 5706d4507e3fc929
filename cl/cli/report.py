"""``cl report RUN_DIR``: re-print and re-plot a finished (or failed) run."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="re-print and re-plot a run directory")
    p.add_argument("run_dir")
    p.add_argument("--allow-modified", action="store_true",
                   help="report a results.json that fails its checksum (edited or damaged), "
                        "marked as modified")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from cl.core.results import load_results
    from cl.reporting import report

    results = load_results(args.run_dir, allow_modified=args.allow_modified)
    path = report.write_report(args.run_dir, results)
    report.print_results(results)
    print(f"report: {path}")
    return 0
