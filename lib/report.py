"""Command line: ``python -m lib.report`` rebuilds the cross-study main table (see lib.study.report)."""
import sys

from lib.entrypoint import run_main
from lib.study.report import main

if __name__ == "__main__":
    sys.exit(run_main(main))
