#!/usr/bin/env python3
"""The reconstruction studio's entry point (`{venv}/bin/python {tools}/recon/studio.py ...`).

The program is `daas_recon.studio.server` beside this file; this file only puts that folder
on the import path and runs it, so the local runtime's command needs no install step.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from daas_recon.studio.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
