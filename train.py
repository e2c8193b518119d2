"""Train a neural operator: ``python train.py model=fno pde=darcy`` (see configs/train.yaml)."""

import hydra
from omegaconf import DictConfig

from neurop.cli.train import run


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
