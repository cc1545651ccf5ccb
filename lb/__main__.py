"""`python -m lb` is the `lb` command."""

import sys

from lb.cli import main

sys.exit(main())
