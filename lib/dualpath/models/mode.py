"""``eval_mode``: evaluate with modules in eval mode, then give each submodule its own mode back."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Within the block every module and submodule is in eval mode (dropout off, BatchNorm on its
    running statistics); afterwards each gets back exactly the mode it had, so a frozen backbone
    kept in eval mode inside a training model stays there."""
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training
