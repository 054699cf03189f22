"""Command line: ``python -m lib.runner`` (what run_all.sh calls) executes the notebooks for every
seed with papermill (see lib.study.runner)."""
import sys

from lib.entrypoint import run_main
from lib.study.runner import main

if __name__ == "__main__":
    sys.exit(run_main(main))
