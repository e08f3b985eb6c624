import sys

from gowide.cli import main

sys.exit(main())
