"""Models: the zoo, the :class:`Normalize`-first :class:`Classifier`, and safe checkpoints."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .core import ZOO, Classifier, Normalize, build_model, check_compatible, default_arch
from .nets import ConvAutoencoder

__all__ = [
    "ZOO",
    "Classifier",
    "ConvAutoencoder",
    "Normalize",
    "build_model",
    "check_compatible",
    "default_arch",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
