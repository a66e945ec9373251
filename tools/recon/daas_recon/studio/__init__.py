"""The reconstruction studio: a web app in a daas session that holds one scan in memory and
answers each change of centre, filter, ring removal, angle range or algorithm with a new
slice in well under a second, with a focus figure.

- `load`: the rows into memory once (flat/dark corrected, `-log`, float32, one sinogram per
  row), whether they fit the session's memory, progress for daas;
- `regrid`: filtered back-projection by Fourier regridding (FINUFFT), the fast algorithm;
- `sharpness`: the focus figure;
- `slices`: a view's values checked, the slice made, caches of what a centre step reuses;
- `server`: the tornado server, its routes and the contract with daas;
- `static/`: the page (plain HTML, CSS and JavaScript).

Entry point: tools/recon/studio.py. Parameters: tools/recon/studio_schema.json.
"""
