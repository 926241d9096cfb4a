import sys

from lossview.cli import main

if __name__ == "__main__":  # not when multiprocessing imports the main module
    sys.exit(main())
