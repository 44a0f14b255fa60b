"""Label-smoothed cross entropy for the attention decoder (as ESPnet's ``LabelSmoothingLoss``).

The target distribution puts ``1 - smoothing`` on the true token and spreads ``smoothing``
evenly over the other V-1 tokens; the loss is KL(target || model) summed over the non-padding
tokens, divided by the batch size (``normalize_length=False``, per utterance) or by the number
of tokens (``normalize_length=True``). KL equals the cross entropy minus the (constant) entropy
of the target distribution, so it is 0 for a perfect model.
"""

import torch
from torch import nn


class LabelSmoothingLoss(nn.Module):
    def __init__(self, size: int, padding_idx: int = -1, smoothing: float = 0.1, normalize_length: bool = False):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"lsm_weight must be in [0, 1), got {smoothing}")
        self.size = size
        self.padding_idx = padding_idx
        self.smoothing = smoothing
        self.confidence = 1.0 - smoothing
        self.normalize_length = normalize_length

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, L, V), target (B, L) with ``padding_idx`` in the padding -> scalar loss."""
        batch = logits.size(0)
        logits = logits.reshape(-1, self.size).float()
        target = target.reshape(-1)
        keep = target != self.padding_idx
        logits, target = logits[keep], target[keep]
        true_dist = torch.full_like(logits, self.smoothing / (self.size - 1))
        true_dist.scatter_(1, target.unsqueeze(1), self.confidence)
        kl = torch.nn.functional.kl_div(torch.log_softmax(logits, dim=-1), true_dist, reduction="sum")
        denom = max(int(keep.sum()), 1) if self.normalize_length else batch
        return kl / denom


def th_accuracy(logits: torch.Tensor, target: torch.Tensor, ignore_label: int = -1) -> torch.Tensor:
    """Token accuracy of argmax(logits) (B, L, V) against target (B, L), padding ignored."""
    keep = target != ignore_label
    correct = (logits.argmax(dim=-1) == target) & keep
    return correct.sum().float() / keep.sum().clamp(min=1).float()
