"""The model zoo: `build_model(name)` for Anam-Net and the networks it is compared with."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from covseg.models.anamnet import AnamNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "anamnet": AnamNet,
}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, in_channels: int = 1, num_classes: int = 3, **kwargs) -> nn.Module:
    """A freshly initialised network by registry name (case-insensitive)."""
    key = name.lower()
    if key not in _REGISTRY:
        from covseg.errors import CovsegError
        raise CovsegError(f"unknown model '{name}'; choose one of: {', '.join(available_models())}")
    return _REGISTRY[key](in_channels=in_channels, num_classes=num_classes, **kwargs)
