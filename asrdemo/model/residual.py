"""The residual connection around every encoder and decoder sub-block, with LayerNorm before the
sub-block (``normalize_before=True``, pre-norm, the default) or after the sum (post-norm, the
original Transformer's)."""

from typing import Any, Callable, Optional, Tuple

import torch
from torch import nn


def residual_block(x: torch.Tensor, norm: nn.Module, fn: Callable[[torch.Tensor], Tuple[torch.Tensor, Any]],
                   dropout: nn.Module, normalize_before: bool,
                   scale: Optional[float] = None) -> Tuple[torch.Tensor, Any]:
    """x (B, T, D) -> (x + dropout(fn(norm(x))), what fn returns beside its output) (pre-norm), or
    (norm(x + dropout(fn(x))), ...) (post-norm). ``fn(x) -> (out (B, T, D), extra)``, e.g. an
    attention cache; ``scale`` multiplies the sub-block's output (the Conformer's half-step FFN)."""
    residual = x
    if normalize_before:
        x = norm(x)
    out, extra = fn(x)
    out = dropout(out)
    x = residual + (out if scale is None else scale * out)
    if not normalize_before:
        x = norm(x)
    return x, extra
