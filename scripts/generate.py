"""Generate a PDE data set into HDF5: ``python scripts/generate.py pde=darcy n_samples=1000 split=train``."""

from neurop.cli.generate import main

if __name__ == "__main__":
    main()
