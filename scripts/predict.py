"""Predict a data file: ``python scripts/predict.py model=fno-darcy input=a.h5 output=p.h5``."""

from neurop.inference.cli import predict_main

if __name__ == "__main__":
    predict_main()
