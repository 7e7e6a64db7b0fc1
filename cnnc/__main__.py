"""`python -m cnnc` is the `cnnc` command."""
import sys

from .cli import main

sys.exit(main())
