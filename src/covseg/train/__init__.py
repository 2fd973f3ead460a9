"""Training from small YAML experiment files."""
from covseg.train.config import TrainConfig, load_config
from covseg.train.trainer import train

__all__ = ["TrainConfig", "load_config", "train"]
