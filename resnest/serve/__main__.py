"""``python -m resnest.serve``: see :mod:`resnest.serve.cli`."""

import sys

from resnest.serve.cli import main

if __name__ == "__main__":
    sys.exit(main())
