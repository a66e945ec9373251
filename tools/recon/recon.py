#!/usr/bin/env python3
"""The local runtime's entry point (`{venv}/bin/python {tools}/recon/recon.py ...`).

The program is the `daas_recon` package beside this file; this file only puts that folder on
the import path and runs it, so the image command needs no install step.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from daas_recon.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
