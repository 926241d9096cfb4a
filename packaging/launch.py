"""Entry script of the frozen app (PyInstaller): ``lossview [COMMAND ...]``, start page by default."""

import sys

from lossview.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["open"]))
