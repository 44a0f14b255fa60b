"""The joint CTC/attention model: ``from asrdemo.model.asr_model import ASRModel``.

One concept per file (cmvn, specaug, subsampling, embedding, attention, convolution,
positionwise_feed_forward, encoder_layer, encoder, decoder_layer, decoder, ctc,
label_smoothing_loss, mask, asr_model); see docs/model.md.
"""
