"""Evaluate models on data files at several resolutions: ``python scripts/evaluate.py model=... data=...``."""

from neurop.inference.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
