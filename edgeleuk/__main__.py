import sys

from edgeleuk.cli import main

sys.exit(main())
