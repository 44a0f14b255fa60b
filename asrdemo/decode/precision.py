"""Inference precision (`dtype:` of the decode config): what `bfloat16` and `int8` change.

A search step multiplies all of the attention decoder's (and the LM's) weights by a handful of
rows (the beam), so it mostly reads memory: fewer bytes per weight is a faster step.

* ``float32`` — nothing changes (the default).
* ``bfloat16`` — the decoder's and the LM's weights are cast to bf16 (half the bytes) and the
  encoder runs under ``torch.autocast`` (its weights stay float32: it runs once per utterance over
  many frames). Native on CPUs with AVX-512 BF16 / AMX and on GPUs; emulated (slower) elsewhere.
* ``int8`` — PyTorch's dynamic quantization (``torch.ao.quantization.quantize_dynamic``, as in its
  "dynamic quantization" tutorial): every ``nn.Linear`` of the decoder and the LM holds int8
  weights (a quarter of the bytes) with a float scale per tensor, activations are quantized per
  call; CPU only. The encoder runs under bf16 autocast where the CPU computes bf16 natively (AVX-512
  BF16 / AMX), else in float32. PyTorch marks ``torch.ao.quantization`` as deprecated
  in favour of torchao, whose CPU int8 kernels are, without ``torch.compile``, slower than float32
  here (bench/RESULTS.md): this is the one that pays on a CPU today.

Every log-softmax and every score stays float32 whatever the dtype (the decoder and the LM return
float32 log-probabilities).
"""

import contextlib
import warnings

import torch

from asrdemo.decode.decode_config import DTYPES
from asrdemo.errors import AsrdemoError
from asrdemo.utils.cpu import cpu_has_bf16


def cast_for_inference(module: torch.nn.Module, dtype: str, device: torch.device) -> torch.nn.Module:
    """The decoder or LM `module` in `dtype` (DTYPES) -> the module to use (bf16: the same module,
    cast in place; int8: a quantized copy). Raises AsrdemoError for int8 on a non-CPU device."""
    if dtype == "float32":
        return module
    if dtype == "bfloat16":
        return module.to(torch.bfloat16)
    if dtype == "int8":
        if device.type != "cpu":
            raise AsrdemoError(f"dtype int8 (dynamic quantization) runs on the CPU only, not on {device}; "
                               "use bfloat16 on a GPU")
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # the deprecation notice of torch.ao, once per layer
            warnings.simplefilter("ignore")
            return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
    raise AsrdemoError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")


def encoder_autocast(device: torch.device, dtype: str):
    """The context the encoder runs in: bf16 autocast for ``bfloat16``, and for ``int8`` on a CPU
    with native bf16 (the fastest encoder there; emulated bf16 would be slower than float32);
    else nothing."""
    if dtype == "bfloat16" or (dtype == "int8" and device.type == "cpu" and cpu_has_bf16()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
