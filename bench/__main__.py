"""Command line of the benchmark: parse options, run the scenarios, print the table or JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.runner import main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="k3sreg vs docker-registry 2.8.2 vs nginx (sendfile), on the same content, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="small blobs, one round, 2 s load runs (~1 min)")
    parser.add_argument("--json", action="store_true", help="print JSON (samples, medians, ratios) instead of a table")
    parser.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    parser.add_argument("--runs", type=int, help="rounds per figure; the median is reported (default 3)")
    parser.add_argument("--blob-mib", type=int, help="size of the big blob in MiB (default 256)")
    parser.add_argument("--seconds", type=float, help="duration of each wrk/ab load run (default 10)")
    parser.add_argument("--tags", type=int, help="tags in the tags/list repository (default 1000)")
    parser.add_argument("--workers", type=int, help="k3sreg --workers and nginx worker_processes (default 2)")
    parser.add_argument("--servers", help="comma-separated subset of k3sreg,docker-registry,nginx")
    parser.add_argument(
        "--k3sreg-env",
        action="append",
        metavar="NAME=VALUE",
        help="add to k3sreg's environment (repeatable), e.g. MALLOC_MMAP_THRESHOLD_=1048576",
    )
    parser.add_argument("--scenarios", help="comma-separated scenarios to run (default: all)")
    parser.add_argument("--tmpdir", help="where the temporary data directory goes (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and server logs")
    parser.add_argument("--from-json", metavar="FILE", help="render the results of an earlier --json run")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _run() -> int:
    args = _parser().parse_args()
    try:
        return asyncio.run(main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; servers stopped and temporary files removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(_run())
