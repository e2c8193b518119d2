"""Export a checkpoint to a self-contained directory: ``python scripts/export.py ckpt=<.ckpt> out=<dir>``."""

from neurop.inference.cli import export_main

if __name__ == "__main__":
    export_main()
