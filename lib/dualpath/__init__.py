"""dualpath: Dual-Path Convolutional Image-Text Embeddings with Instance Loss, in PyTorch.

The public API is short:

    import dualpath
    enc = dualpath.load_checkpoint("runs/<run>/best_stage2.pt")
    enc.encode_text(["a dog runs on the beach"]); enc.encode_image(["photo.jpg"])
    enc.index(images=paths).search_images("a dog", k=5)

Training: ``dualpath.train.train(dualpath.preset("cpu"))`` or ``python -m dualpath.train``.
"""
from .config import Config, preset
from .errors import CheckpointError, ConfigError, DataError, DualPathError, WeightsError

__version__ = "0.1.0"


def load_checkpoint(path, device: str = "cpu", text_policy: str | None = None):
    """Load a trained model in one line; returns a ``dualpath.search.Encoder``."""
    from .search import Encoder

    return Encoder.from_checkpoint(path, device=device, text_policy=text_policy)


__all__ = ["Config", "preset", "load_checkpoint", "DualPathError", "DataError", "ConfigError",
           "WeightsError", "CheckpointError"]
