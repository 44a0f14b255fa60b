"""Chunk-based attention: which frames each encoder frame may see, for streaming.

A streaming encoder cannot wait for the end of the utterance. U2 (Zhang et al. 2020,
arXiv:2012.05481, section 2.2) splits the encoder frames into chunks of C frames: a frame sees its
own chunk and the chunks before it (or only the last ``num_left_chunks`` of them), never a later
chunk. The latency is then one chunk, and at inference the chunks can be computed one after another
with the keys/values of earlier chunks cached (asrdemo/model/encoder.py ``forward_chunk``).

*Dynamic chunk training* (U2 section 2.3; U2++, Wu et al. 2021, arXiv:2106.05642) trains ONE model
for every chunk size: each batch draws its own C. WeNet's rule, kept here: draw c uniformly from
[1, T); if c > T/2 the batch uses full context (about half the batches), otherwise C = 1 + c mod 25
(1..25 frames). With ``use_dynamic_left_chunk`` the left context is drawn too. The same model then
decodes in full context (the offline path, unchanged) or chunk by chunk at any C.
"""

from typing import Tuple

import torch

from asrdemo.model.mask import chunk_attention_mask

FULL_CONTEXT = 0  # chunk size 0: every frame sees every frame
MAX_DYNAMIC_CHUNK = 25  # WeNet: dynamic chunks of 1..25 encoder frames


def choose_chunk(num_frames: int, training: bool, use_dynamic_chunk: bool, use_dynamic_left_chunk: bool,
                 static_chunk_size: int, decoding_chunk_size: int = 0,
                 num_decoding_left_chunks: int = -1) -> Tuple[int, int]:
    """-> (chunk_size, num_left_chunks) for one batch of ``num_frames`` encoder frames;
    chunk_size FULL_CONTEXT (0) means no chunk mask, num_left_chunks < 0 means all earlier chunks.

    ``decoding_chunk_size`` > 0 asks for that chunk size (with ``num_decoding_left_chunks``), < 0
    for full context; 0 leaves the choice to the model: a random chunk per batch while training
    with ``use_dynamic_chunk``, else ``static_chunk_size`` (0: full context). Random draws use
    torch's generator, so the trainer's seeding and resume cover them.
    """
    if decoding_chunk_size > 0:
        return decoding_chunk_size, num_decoding_left_chunks
    if decoding_chunk_size < 0:
        return FULL_CONTEXT, -1
    if training and use_dynamic_chunk and num_frames > 1:
        draw = int(torch.randint(1, num_frames, (1,)).item())
        if draw > num_frames // 2:
            return FULL_CONTEXT, -1
        chunk_size = draw % MAX_DYNAMIC_CHUNK + 1
        num_left_chunks = -1
        if use_dynamic_left_chunk:
            max_left_chunks = (num_frames - 1) // chunk_size
            num_left_chunks = int(torch.randint(0, max(max_left_chunks, 1), (1,)).item())
        return chunk_size, num_left_chunks
    if static_chunk_size > 0:
        return static_chunk_size, num_decoding_left_chunks
    return FULL_CONTEXT, -1


def add_chunk_mask(masks: torch.Tensor, chunk_size: int, num_left_chunks: int = -1) -> torch.Tensor:
    """Padding mask (B, 1, T) bool True = valid -> attention mask: (B, T, T) with the chunk
    structure of ``chunk_attention_mask`` and the padded keys blocked, or the padding mask itself
    for FULL_CONTEXT."""
    if chunk_size == FULL_CONTEXT:
        return masks
    return masks & chunk_attention_mask(masks.size(-1), chunk_size, num_left_chunks, masks.device).unsqueeze(0)
