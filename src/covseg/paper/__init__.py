"""The paper's comparison (Tables IV, VII-XI) under one protocol: `covseg paper` / `reproduce`."""
from covseg.paper.reproduce import reproduce

__all__ = ["reproduce"]
