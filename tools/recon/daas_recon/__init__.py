"""daas_recon: daas's tomography reconstruction job.

One program for every runtime (the local runtime runs `tools/recon/recon.py`, the container
image runs `python -m daas_recon`): a Data Exchange HDF5 scan in; flat/dark correction,
stripe removal, centre of rotation and reconstruction from maintained libraries (algotom,
ASTRA); a volume, PNG previews and `summary.json` out. See `python -m daas_recon --help`.
"""

__version__ = "1.0.0"
