"""The CTC branch: a linear layer from the encoder output to the vocabulary (blank = id 0).

The loss is summed over the batch and divided by the batch size (per-utterance, as ESPnet and
WeNet). ``zero_infinity=True`` as in ESPnet2: an utterance whose labels cannot fit its frames
contributes 0 instead of inf (filter such utterances out of the data; see
``Conv2dSubsampling.min_input_frames``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from asrdemo.model.dropout import Dropout
from asrdemo.model.mask import make_non_pad_mask


class CTC(nn.Module):
    def __init__(self, vocab_size: int, encoder_output_size: int, dropout_rate: float = 0.0, blank_id: int = 0):
        super().__init__()
        self.ctc_lo = nn.Linear(encoder_output_size, vocab_size)
        self.dropout = Dropout(dropout_rate)
        self.blank_id = blank_id

    def forward(self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_pad: torch.Tensor,
                ys_lens: torch.Tensor) -> torch.Tensor:
        """hs_pad (B, T, D), hlens (B,), ys_pad (B, L) padded with anything, ys_lens (B,)
        -> scalar loss (sum over utterances / B)."""
        logp = torch.log_softmax(self.ctc_lo(self.dropout(hs_pad)).float(), dim=-1)
        targets = ys_pad[make_non_pad_mask(ys_lens, ys_pad.size(1))]  # the labels of all utterances, concatenated
        loss = F.ctc_loss(
            logp.transpose(0, 1), targets, hlens, ys_lens,
            blank=self.blank_id, reduction="sum", zero_infinity=True,
        )
        return loss / hs_pad.size(0)

    def log_softmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, V) log-posteriors per frame."""
        return torch.log_softmax(self.ctc_lo(hs_pad), dim=-1)
