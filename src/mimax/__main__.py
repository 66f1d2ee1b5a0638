import sys

from mimax.cli import main

sys.exit(main())
