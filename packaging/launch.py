"""Entry script of the frozen app (PyInstaller): ``lossview [COMMAND ...]``, start page by default."""

import multiprocessing
import sys

if __name__ == "__main__":
    # first: a frozen child process started by multiprocessing must not run the app
    # (the bundle runs lossview's jobs on threads, lossview.core.tasks.processes.available)
    multiprocessing.freeze_support()
    from lossview.cli import main

    sys.exit(main(sys.argv[1:] or ["open"]))
