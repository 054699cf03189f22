"""What every command line does with an error that reaches it: one line ``error: ...`` and a
non-zero exit status. The traceback is for developers: ``--debug`` or ``STUDY_DEBUG=1``."""
from __future__ import annotations

import os
import sys
from typing import Callable

DEBUG_FLAG = "--debug"
DEBUG_ENV = "STUDY_DEBUG"


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    # Our own errors say what to do; any other is named by its type, since its text alone may mislead.
    return text if hasattr(error, "exit_status") else f"{type(error).__name__}: {text}"


def run_main(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Call ``main(argv)`` and turn an escaping exception into one line on stderr and its exit status
    (``exit_status`` of the error, else 1; 130 for Ctrl-C). ``--debug`` anywhere in argv is taken
    out of it and sets STUDY_DEBUG=1 (inherited by notebooks and other child processes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if DEBUG_FLAG in argv:
        argv = [a for a in argv if a != DEBUG_FLAG]
        os.environ[DEBUG_ENV] = "1"
    try:
        return main(argv) or 0
    except SystemExit:
        raise  # argparse's usage errors and explicit exits already say what they mean
    except KeyboardInterrupt:
        if debugging():
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debugging():
            raise
        ours = hasattr(e, "exit_status")
        hint = "" if ours else f" (run with {DEBUG_FLAG} or {DEBUG_ENV}=1 for the traceback)"
        print(f"error: {one_line(e)}{hint}", file=sys.stderr)
        return getattr(e, "exit_status", 1)
