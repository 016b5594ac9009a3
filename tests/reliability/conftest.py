"""The reliability suite imports its own helper (``rawserver``) by name, like the suite above
imports ``twin`` and ``loopback``: this directory goes on ``sys.path`` whatever the import mode."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
