"""`python -m covseg` is the `covseg` command."""
import sys

from covseg.cli import main

sys.exit(main())
