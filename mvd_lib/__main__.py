"""`python -m mvd_lib`: see mvd_lib/cli.py."""
import sys

from mvd_lib.cli import main

sys.exit(main())
