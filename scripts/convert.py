"""Import FNO-paper ``.mat`` or neuraloperator ``.pt`` files into neurop's HDF5 layout, one file per split.

Example (the FNO paper's Burgers file: 2048 samples at 8192 points; first 1000 train, last 200 test)::

    python scripts/convert.py burgers_data_R10.mat --pde burgers --out-dir datasets/fno_burgers \\
        --split train=0:1000 --split val=1000:1100 --split test=-200:
    python train.py pde=burgers '+pde.data.files={train: datasets/fno_burgers/train.h5, \\
        val: datasets/fno_burgers/val.h5, test: datasets/fno_burgers/test.h5}' pde.data.stride=8

Darcy (``piececonst_r421_N1024_smooth1.mat``): ``--boundary zero`` sets the published files' non-zero
boundary values of the solution to zero (the PDE's boundary condition); the default keeps them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from neurop.data.convert import PDE_NAMES, convert, import_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src", type=Path, help="source .mat or .pt file")
    parser.add_argument("--pde", required=True, choices=PDE_NAMES)
    parser.add_argument("--out-dir", type=Path, required=True, help="directory of the <split>.h5 files")
    parser.add_argument(
        "--split",
        action="append",
        default=None,
        metavar="NAME=START:STOP",
        help="a split and its sample range (repeatable); default: all samples as 'train'",
    )
    parser.add_argument("--format", dest="fmt", default="auto", choices=("auto", "mat", "pt"))
    parser.add_argument(
        "--boundary", default="keep", choices=("keep", "zero"), help="darcy solution boundary"
    )
    parser.add_argument(
        "--bool-values",
        type=float,
        nargs=2,
        default=(0.0, 1.0),
        metavar=("LOW", "HIGH"),
        help="values of a boolean darcy coefficient",
    )
    parser.add_argument("--t-final", type=float, default=1.0, help="final time (burgers; navier_stokes .pt)")
    parser.add_argument(
        "--snapshot-interval", type=float, default=1.0, help="navier_stokes .mat snapshot spacing"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    splits = args.split or ["train=:"]
    for spec in splits:
        name, sep, samples = spec.partition("=")
        if not sep or not name:
            parser.error(f"--split must look like NAME=START:STOP, got {spec!r}")
        out = args.out_dir / f"{name}.h5"
        t0 = time.perf_counter()
        path = convert(
            args.src,
            out,
            args.pde,
            fmt=args.fmt,
            split=name,
            samples=samples,
            boundary=args.boundary,
            bool_values=args.bool_values,
            t_final=args.t_final,
            snapshot_interval=args.snapshot_interval,
            overwrite=args.overwrite,
        )
        print(f"{name}: {path} ({time.perf_counter() - t0:.1f} s) {import_info(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
