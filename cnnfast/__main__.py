"""``python -m cnnfast``: the same as the ``cnnfast`` command (see :mod:`cnnfast.cli`)."""

import sys

from cnnfast.cli import main

if __name__ == "__main__":
    sys.exit(main())
