"""Boolean masks used throughout the model.

Convention (the same everywhere in asrdemo.model): a mask is a ``torch.bool`` tensor and
**True means "this position is real / may be attended to"**, False means padding or the future.
"""

import torch


def make_pad_mask(lengths: torch.Tensor, max_len: int = 0) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool, True at the *padded* positions.

    `max_len` > 0 is the mask's width (callers pass the padded tensor's size, which spares reading
    `lengths` back from the device); 0: max(lengths).

    >>> make_pad_mask(torch.tensor([3, 1]))
    tensor([[False, False, False],
            [False,  True,  True]])
    """
    if max_len <= 0:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def make_non_pad_mask(lengths: torch.Tensor, max_len: int = 0) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool, True at the *valid* positions."""
    return ~make_pad_mask(lengths, max_len)


def subsequent_mask(size: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(size, size) bool lower triangle: row i may look at columns 0..i (no peeking ahead).

    >>> subsequent_mask(3)
    tensor([[ True, False, False],
            [ True,  True, False],
            [ True,  True,  True]])
    """
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


def target_mask(ys_in_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Decoder self-attention mask (B, L, L): a valid key position AND not in the future."""
    keys_valid = make_non_pad_mask(ys_in_lens, max_len).unsqueeze(1)  # (B, 1, L)
    return keys_valid & subsequent_mask(max_len, ys_in_lens.device).unsqueeze(0)


def chunk_attention_mask(size: int, chunk_size: int, num_left_chunks: int = -1,
                         device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(size, size) bool: frame i may look at the frames of its own chunk and of the
    ``num_left_chunks`` chunks before it (all earlier chunks when negative), never at later chunks.

    Chunks are ``chunk_size`` consecutive frames; this is WeNet's ``subsequent_chunk_mask``
    (U2, Zhang et al. 2020, arXiv:2012.05481, section 2.2). chunk_size 1 with no left limit is
    ``subsequent_mask``; chunk_size >= size is full context.

    >>> chunk_attention_mask(4, 2)
    tensor([[ True,  True, False, False],
            [ True,  True, False, False],
            [ True,  True,  True,  True],
            [ True,  True,  True,  True]])
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk = torch.arange(size, device=device) // chunk_size
    query, key = chunk.unsqueeze(1), chunk.unsqueeze(0)
    mask = key <= query
    if num_left_chunks >= 0:
        mask &= key >= query - num_left_chunks
    return mask
