"""int8 linear layers for CPU inference whose rows are quantized each on its own.

    quantize_linear_layers(network)   # every nn.Linear -> Int8Linear, in place (inference only)

Weights are stored as int8 with one scale per output feature (symmetric: the largest absolute
weight of the feature maps to 127).  Each input row (a token's activations) is quantized with its
own scale at run time, multiplied in int8 with int32 sums (``torch._int_mm``), and scaled back.

Why per row, not per tensor as ``torch.ao.quantization.quantize_dynamic``: a per-tensor scale is
the largest activation of the whole batch, padded positions included, so a sentence's result
would depend on its batch mates and on its padding.  Per row, a token's int8 values are its own;
integer sums are exact whatever the kernel's blocking; and the scaling back is element-wise: an
example's results are the same alone and in any batch, to the bit, as in float32.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Int8Linear", "QUANTIZATIONS", "quantize_linear_layers"]

QUANTIZATIONS = ("int8",)  # what ``Translator.load(quantize=...)`` and ``--quantize`` accept
INT8_LIMIT = 127  # symmetric: -127..127, so that negating a value never overflows


class Int8Linear(nn.Module):
    """``nn.Linear``'s computation, ``[..., K] -> [..., N]``, with int8 weights and inputs."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()  # [N, K]
        scale = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / INT8_LIMIT  # [N]
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", _dense_int8(torch.round(weight / scale[:, None]).t()))  # [K, N]
        self.register_buffer("weight_scale", scale)  # [N]
        bias = linear.bias.detach().float() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            raise ValueError("int8 layers compute no gradients: explain an int8 model with attention only, or "
                             "load it without quantize for gradient attributions")
        rows = x.reshape(-1, self.in_features).float()  # [M, K]
        # the same operations in the same order as the formulas say, each past the first on its own
        # new result in place: half the allocations of a layer's dozen small operations
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(torch.finfo(torch.float32).tiny)
        scale = scale.div_(INT8_LIMIT)  # [M, 1]
        quantized = _dense_int8(torch.div(rows, scale).round_())
        sums = torch._int_mm(quantized, self.weight_int8)  # [M, N], int32: exact
        out = sums.float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _dense_int8(values: Tensor) -> Tensor:
    """``values`` (whole numbers within the int8 range) as an int8 tensor with row-major strides.
    ``torch._int_mm`` reads its operands' strides as they are, and a tensor with a dimension of size 1
    counts as contiguous with any stride there (a transposed ``[2, 1]`` weight, or one row), which
    gave it other numbers than the product (found with 1 input feature)."""
    dense = torch.empty(values.shape, dtype=torch.int8, device=values.device)
    return dense.copy_(values)


def quantize_linear_layers(network: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` in ``network`` (its subclasses too) by an ``Int8Linear``, in place;
    for inference on the CPU.  Embeddings, layer norms and recurrent cells stay float32."""
    for module in list(network.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child))
    return network
