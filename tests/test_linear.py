"""``modules.linear.Linear``: nn.Linear whose CPU inference multiplies with a oneDNN-packed weight,
a row's bits the same at any row count, and never with weights older than the layer's."""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cronos.modules.linear import Linear, _packing_available, packed_for_inference

pytestmark = pytest.mark.skipif(not _packing_available(), reason="this torch has no oneDNN")


@settings(max_examples=25, deadline=None)
@given(shape=st.sampled_from([(256, 512), (512, 256), (300, 500), (1024, 128), (129, 1024)]), rows=st.integers(1, 40),
       seed=st.integers(0, 2**16))
def test_in_inference_a_rows_bits_do_not_depend_on_the_other_rows(shape, rows, seed):
    generator = torch.Generator().manual_seed(seed)
    inputs, outputs = shape
    layer = Linear(inputs, outputs)
    x = torch.randn(120, inputs, generator=generator)
    with torch.no_grad(), packed_for_inference(layer):
        assert layer.packed is not None
        assert torch.equal(layer(x[:rows]), layer(x)[:rows])  # rows alone and among 120
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias),
                                   rtol=1e-5, atol=1e-5)  # the same product, to rounding


def test_small_layers_keep_mkls_product():
    small, large = Linear(256, 256), Linear(256, 512)
    with torch.no_grad(), packed_for_inference(torch.nn.Sequential(small, large)):
        assert small.packed is None and large.packed is not None


def test_outside_inference_it_is_nn_linear_and_keeps_its_state_dict_keys():
    layer = Linear(256, 512)
    x = torch.randn(3, 256, requires_grad=True)
    assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    with packed_for_inference(layer):  # autograd on: gradients flow through nn.Linear's product
        layer(x).sum().backward()
    assert x.grad is not None and set(layer.state_dict()) == {"weight", "bias"}
    with torch.no_grad(), packed_for_inference(layer):
        assert set(layer.state_dict()) == {"weight", "bias"} and copy.deepcopy(layer).packed is None
    assert layer.packed is None  # dropped after the block


def test_each_inference_block_multiplies_with_the_weights_as_they_are_after_a_fused_optimizer_step():
    """torch's fused Adam updates weights in place without a trace in their version counter: a
    packed copy kept from one validation to the next would be stale."""
    torch.manual_seed(0)
    layer, x = Linear(256, 512), torch.randn(6, 256)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1, fused=True)
    for _ in range(3):
        layer(x).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad(), packed_for_inference(layer):
            torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias),
                                       rtol=1e-5, atol=1e-5)
