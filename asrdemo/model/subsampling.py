"""Conv2d subsampling: (B, T, 80) fbank -> (B, T', D) with T' ~ T/4, T/6 or T/8 (or T/2).

Two or three 2-D convolutions (no padding, ReLU) over time x frequency, then a linear layer
from (channels x remaining frequency bins) to D, then the positional encoding
(ESPnet/WeNet ``Conv2dSubsampling4/6/8``). ``conv2d2`` (ESPnet's ``Conv2dSubsampling2``: a
stride-2 then a stride-1 convolution) is for features at 20 ms, such as a self-supervised model's
(asrdemo/model/ssl_frontend.py): x2 gives the 40 ms encoder frames that conv2d (x4) gives 10 ms fbank. The convolutions have D channels as in ESPnet unless
``channels`` says otherwise: their cost grows with channels², and at the mini model's size they
are most of a training step, so a small model does well with fewer (e.g. 32).

Output frame t' looks at input frames ``rate*t' ... rate*t' + right_context``. The mask is
subsampled so that t' is valid exactly when its last input frame is valid, which makes the
valid outputs independent of how much padding follows an utterance.
"""

from typing import Optional, Tuple

import torch
from torch import nn

# rate -> [(kernel, stride) of each conv layer]
CONV_LAYERS = {
    2: [(3, 2), (3, 1)],
    4: [(3, 2), (3, 2)],
    6: [(3, 2), (5, 3)],
    8: [(3, 2), (3, 2), (3, 2)],
}
INPUT_LAYERS = {"conv2d2": 2, "conv2d": 4, "conv2d6": 6, "conv2d8": 8}


def conv_output_length(length, kernel: int, stride: int):
    """Frames left after one unpadded convolution (works on ints and tensors)."""
    return (length - kernel) // stride + 1


class Conv2dSubsampling(nn.Module):
    def __init__(self, idim: int, odim: int, pos_enc: nn.Module, rate: int = 4, channels=None):
        super().__init__()
        if rate not in CONV_LAYERS:
            raise ValueError(f"subsampling rate must be one of {sorted(CONV_LAYERS)}, got {rate}")
        self.rate = rate
        self.layers = CONV_LAYERS[rate]
        channels = channels or odim
        convs, in_channels, freq = [], 1, idim
        for kernel, stride in self.layers:
            convs += [nn.Conv2d(in_channels, channels, kernel, stride), nn.ReLU()]
            in_channels, freq = channels, conv_output_length(freq, kernel, stride)
        if freq < 1:
            raise ValueError(f"input_dim {idim} is too small for conv2d subsampling x{rate}")
        # channels-last weights: oneDNN's convolution backward (and bf16 forward) is several times
        # faster with them on CPU (bench/RESULTS.md); values and the state dict are unchanged
        self.conv = nn.Sequential(*convs).to(memory_format=torch.channels_last)
        self.out = nn.Linear(channels * freq, odim)
        self.pos_enc = pos_enc
        # receptive field: output t' covers input frames rate*t' ... rate*t' + right_context
        self.right_context = 0
        step = 1
        for kernel, stride in self.layers:
            self.right_context += (kernel - 1) * step
            step *= stride

    @property
    def min_input_frames(self) -> int:
        """The shortest input that still gives one output frame."""
        return self.right_context + 1

    def output_lengths(self, lengths):
        """Input lengths -> output lengths (ints or tensors), e.g. ((T-1)//2 - 1)//2 for x4."""
        for kernel, stride in self.layers:
            lengths = conv_output_length(lengths, kernel, stride)
        return lengths

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, offset: int = 0
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """x (B, T, idim), x_mask (B, 1, T) -> x (B, T', D), pos_emb, mask (B, 1, T').
        ``offset``: the output frame x's first frame is in the utterance (streaming chunks; abs_pos)."""
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.size()
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        x, pos_emb = self.pos_enc(x, offset)
        # a conv with kernel k, stride s keeps input frames k-1, k-1+s, k-1+2s, ... as "last frames"
        for kernel, stride in self.layers:
            x_mask = x_mask[:, :, kernel - 1 :: stride]
        return x, pos_emb, x_mask
