#!/usr/bin/env python3
"""A small tomographic reconstruction for the demo job image of the local runtime.

Reads the dataset's projections (the demo files are raw bytes standing in for HDF5),
treats them as a sinogram, and reconstructs one slice by filtered back-projection
(ramp filter in Fourier space, then back-projection over the angles) or a few SIRT
iterations. Writes the slice (`slice.npy`, `slice.pgm`) and `summary.json` to the output
folder, logs what it does on stdout, and exits non-zero with a message when it cannot.
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def log(message):
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def load_sinogram(folder, angles, width):
    path = os.path.join(folder, "projections.h5")
    raw = np.fromfile(path, dtype=np.uint8)
    need = angles * width
    if raw.size < need:
        raise ValueError(f"{path} has {raw.size} bytes, need {need}")
    return raw[:need].reshape(angles, width).astype(np.float64) / 255.0


def ramp_filter(sinogram):
    n = sinogram.shape[1]
    size = 1 << (2 * n - 1).bit_length()
    freqs = np.fft.fftfreq(size)
    ramp = np.abs(freqs) * 2
    padded = np.zeros((sinogram.shape[0], size))
    padded[:, :n] = sinogram
    return np.real(np.fft.ifft(np.fft.fft(padded, axis=1) * ramp, axis=1))[:, :n]


def back_project(sinogram, thetas, center):
    n = sinogram.shape[1]
    xs = np.arange(n) - n / 2.0
    x, y = np.meshgrid(xs, xs)
    image = np.zeros((n, n))
    for row, theta in zip(sinogram, thetas):
        t = x * np.cos(theta) + y * np.sin(theta) + center
        image += np.interp(t, np.arange(n), row, left=0.0, right=0.0)
    return image * np.pi / (2 * len(thetas))


def forward_project(image, thetas, center):
    n = image.shape[0]
    xs = np.arange(n) - n / 2.0
    x, y = np.meshgrid(xs, xs)
    sino = np.zeros((len(thetas), n))
    for i, theta in enumerate(thetas):
        t = np.clip(np.rint(x * np.cos(theta) + y * np.sin(theta) + center).astype(int), 0, n - 1)
        sino[i] = np.bincount(t.ravel(), weights=image.ravel(), minlength=n)
    return sino


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parameters", required=True)
    parser.add_argument("--data", required=True, help="folder holding one folder per dataset")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    with open(args.parameters) as f:
        params = json.load(f)
    dataset = params["dataset"]
    algorithm = params.get("algorithm", "fbp")
    folder = os.path.join(args.data, dataset)
    if not os.path.isdir(folder):
        log(f"error: dataset {dataset!r} is not mounted in {args.data}")
        return 2
    log(f"reconstructing {dataset} with {algorithm}")

    angles, width, binning = 192, 1024, 8
    sinogram = load_sinogram(folder, angles, width)
    sinogram = sinogram.reshape(angles, width // binning, binning).mean(axis=2)
    n = sinogram.shape[1]
    center = float(params.get("center", n / 2.0))
    thetas = np.linspace(0, np.pi, angles, endpoint=False)
    log(f"sinogram {angles} x {n} (binning {binning}), centre {center:.1f}")

    if algorithm in ("fbp", "gridrec"):
        image = back_project(ramp_filter(sinogram), thetas, center)
    else:
        iterations = int(params.get("iterations", 50))
        image = np.zeros((n, n))
        norm = forward_project(np.ones((n, n)), thetas, center)
        norm[norm == 0] = 1.0
        for i in range(iterations):
            residual = (sinogram * n - forward_project(image, thetas, center)) / norm
            image += back_project(residual, thetas, center) / angles
            if (i + 1) % 10 == 0:
                log(f"iteration {i + 1}/{iterations}")

    os.makedirs(args.output, exist_ok=True)
    np.save(os.path.join(args.output, "slice.npy"), image)
    scaled = image - image.min()
    if scaled.max() > 0:
        scaled = scaled / scaled.max()
    with open(os.path.join(args.output, "slice.pgm"), "wb") as f:
        f.write(f"P5 {n} {n} 255\n".encode())
        f.write((scaled * 255).astype(np.uint8).tobytes())
    summary = {"dataset": dataset, "algorithm": algorithm, "shape": [n, n],
               "min": float(image.min()), "max": float(image.max()), "mean": float(image.mean())}
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log(f"wrote {n} x {n} slice to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
