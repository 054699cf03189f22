"""Command line: ``python -m lib.report`` rebuilds the cross-study main table (see lib.study.report)."""
import sys

from lib.study.report import main

if __name__ == "__main__":
    sys.exit(main())
