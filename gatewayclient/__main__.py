"""``python -m gatewayclient``: the command line (see ``gatewayclient.cli``)."""

import sys

from gatewayclient.cli import main

if __name__ == "__main__":
    sys.exit(main())
