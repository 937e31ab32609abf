import sys

from dmsc.cli import main

sys.exit(main())
