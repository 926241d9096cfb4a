import sys

from lossview.cli import main

sys.exit(main())
