"""`input_layer_channels`: fewer subsampling channels change the cost, not the shapes or the masks."""

import torch

from asrdemo.model.asr_model import ASRModel


def conf(channels):
    return {"encoder": "conformer", "encoder_conf": {"output_size": 64, "linear_units": 128, "num_blocks": 1,
                                                      "input_layer_channels": channels},
            "decoder_conf": {"linear_units": 128, "num_blocks": 1}}


def test_channels_shrink_the_subsampling_but_keep_shapes():
    torch.manual_seed(0)
    wide, narrow = ASRModel.from_config(conf(None), 80, 20).eval(), ASRModel.from_config(conf(16), 80, 20).eval()
    assert wide.encoder.embed.conv[0].out_channels == 64 and narrow.encoder.embed.conv[0].out_channels == 16
    n_wide = sum(p.numel() for p in wide.encoder.embed.parameters())
    n_narrow = sum(p.numel() for p in narrow.encoder.embed.parameters())
    assert n_narrow < n_wide / 3
    feats, lens = torch.randn(2, 101, 80), torch.tensor([101, 57])
    (a, a_lens), (b, b_lens) = wide.encode(feats, lens), narrow.encode(feats, lens)
    assert a.shape == b.shape == (2, 24, 64) and a_lens.tolist() == b_lens.tolist() == [24, 13]
