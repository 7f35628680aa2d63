import sys

from runlab.cli import main

sys.exit(main())
