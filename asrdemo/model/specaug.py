"""SpecAugment (Park et al., 2019): time warp, frequency masks and time masks.

Applied by ``ASRModel.encode`` to CMVN-normalised features in training mode only, so a masked
value of 0 is the global mean (as in the paper). Each utterance draws its own masks, and time
masks / time warp stay inside the utterance's true length, so padding never "uses up" a mask.

Every random number is drawn from torch's default **CPU** generator (also when the features live
on a GPU), so restoring ``torch.get_rng_state()`` on resume reproduces the masks exactly.
"""

import torch
import torch.nn.functional as F
from torch import nn


def _uniform_int(high_inclusive: torch.Tensor) -> torch.Tensor:
    """One draw per element from U{0, ..., high}, high a (B,) long tensor >= 0 (CPU RNG)."""
    return (torch.rand(high_inclusive.shape) * (high_inclusive + 1).float()).long()


def random_band_mask(
    axis_len: torch.Tensor, max_width: torch.Tensor, num_masks: int, size: int
) -> torch.Tensor:
    """(B, size) bool, True inside ``num_masks`` random bands per row.

    Row b gets bands of width w ~ U{0..max_width[b]} starting at s ~ U{0..axis_len[b] - w},
    so a band never crosses the row's true length ``axis_len[b]``.
    """
    axis_len = axis_len.long().cpu()
    max_width = torch.minimum(max_width.long().cpu(), axis_len)
    positions = torch.arange(size).unsqueeze(0)
    mask = torch.zeros(axis_len.shape[0], size, dtype=torch.bool)
    for _ in range(num_masks):
        width = _uniform_int(max_width)
        start = _uniform_int(axis_len - width)
        mask |= (positions >= start.unsqueeze(1)) & (positions < (start + width).unsqueeze(1))
    return mask


def time_warp(x: torch.Tensor, window: int) -> torch.Tensor:
    """Warp one utterance (T, D) in time: the frame at a random centre c moves to c + d,
    d ~ U{-window..window-1}; both sides are stretched/squeezed with bicubic interpolation
    (as ESPnet's ``time_warp``). Too-short inputs are returned unchanged."""
    t = x.size(0)
    if window <= 0 or t - window <= window:
        return x
    center = int(torch.randint(window, t - window, (1,)).item())
    warped = int(torch.randint(center - window, center + window, (1,)).item()) + 1
    image = x.unsqueeze(0).unsqueeze(0)  # (1, 1, T, D) for 2-D interpolation
    left = F.interpolate(image[:, :, :center], size=(warped, x.size(1)), mode="bicubic", align_corners=False)
    right = F.interpolate(image[:, :, center:], size=(t - warped, x.size(1)), mode="bicubic", align_corners=False)
    return torch.cat([left, right], dim=2)[0, 0]


class SpecAugment(nn.Module):
    """Masks features (B, T, D) in training mode; the identity in eval mode.

    Args:
        num_freq_mask: frequency masks per utterance.
        freq_mask_width: F, the widest frequency mask (width ~ U{0..F}).
        num_time_mask: time masks per utterance.
        time_mask_width_ratio: the widest time mask as a fraction of the utterance's length.
        time_warp: the warp window W in frames (0 turns time warping off).
    """

    def __init__(
        self,
        num_freq_mask: int = 2,
        freq_mask_width: int = 27,
        num_time_mask: int = 2,
        time_mask_width_ratio: float = 0.05,
        time_warp: int = 0,
    ):
        super().__init__()
        if min(num_freq_mask, freq_mask_width, num_time_mask, time_warp) < 0 or not 0 <= time_mask_width_ratio <= 1:
            raise ValueError("SpecAugment settings must be >= 0 (and time_mask_width_ratio <= 1)")
        self.num_freq_mask = int(num_freq_mask)
        self.freq_mask_width = int(freq_mask_width)
        self.num_time_mask = int(num_time_mask)
        self.time_mask_width_ratio = float(time_mask_width_ratio)
        self.time_warp = int(time_warp)

    @torch.no_grad()
    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> torch.Tensor:
        """feats (B, T, D), feat_lens (B,) -> augmented copy (B, T, D); unchanged in eval mode."""
        if not self.training:
            return feats
        batch, frames, dim = feats.shape
        lens = feat_lens.long().cpu()
        out = feats.clone()
        if self.time_warp > 0:
            for b in range(batch):
                n = int(lens[b])
                out[b, :n] = time_warp(out[b, :n], self.time_warp)
        if self.num_freq_mask > 0:
            freq = random_band_mask(
                torch.full((batch,), dim), torch.full((batch,), self.freq_mask_width), self.num_freq_mask, dim
            )
            out.masked_fill_(freq.to(out.device).unsqueeze(1), 0.0)
        if self.num_time_mask > 0:
            max_width = (lens.double() * self.time_mask_width_ratio).long()
            time = random_band_mask(lens, max_width, self.num_time_mask, frames)
            out.masked_fill_(time.to(out.device).unsqueeze(2), 0.0)
        return out

    def extra_repr(self) -> str:
        return (
            f"freq={self.num_freq_mask}x{self.freq_mask_width}, time={self.num_time_mask}x"
            f"{self.time_mask_width_ratio:g}*len, time_warp={self.time_warp}"
        )
