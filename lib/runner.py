"""Command line: ``python -m lib.runner`` (what run_all.sh calls) executes the notebooks for every
seed with papermill (see lib.study.runner)."""
import sys

from lib.study.runner import main

if __name__ == "__main__":
    sys.exit(main())
