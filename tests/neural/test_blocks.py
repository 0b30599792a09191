"""The channels-last fast paths of neural/blocks.py give the values of the plain ops they replace."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tha_studio.neural import blocks

from op_record import RecordedOps

CHANNELS_LAST = torch.channels_last


def offset_activations(shape, seed=0):
    """Conv-like activations whose channel means are several times their spread: where a norm
    that sums squares in float32 loses precision."""
    generator = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    means = 3.0 + 2.0 * torch.randn(n, c, 1, 1, generator=generator)
    return (0.7 * torch.randn(shape, generator=generator) + means).contiguous(memory_format=CHANNELS_LAST)


def norm_with_weights(channels, seed=1):
    norm = blocks.instance_norm(channels)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.weight.copy_(0.5 + torch.rand(channels, generator=generator))
        norm.bias.copy_(torch.randn(channels, generator=generator))
    return norm.eval()


def test_the_channels_last_instance_norm_keeps_float32_precision_on_large_planes():
    for shape in ((1, 32, 512, 512), (2, 64, 64, 64)):
        x = offset_activations(shape)
        norm = norm_with_weights(shape[1])
        exact = F.instance_norm(x.double(), weight=norm.weight.double(), bias=norm.bias.double(), eps=norm.eps)
        with torch.inference_mode():
            ours = norm(x)
        assert ours.is_contiguous(memory_format=CHANNELS_LAST)
        # PyTorch's own channels-last batch norm is about 1e-4 off here; NCHW group norm 1.5e-6.
        assert (ours.double() - exact).abs().max() < 5e-6, shape


def test_a_blocks_norm_normalises_its_conv_output_in_place_and_a_plain_one_does_not():
    x = offset_activations((1, 64, 32, 32))
    block_norm, plain_norm = norm_with_weights(64), blocks.InstanceNorm(64, affine=True)
    plain_norm.load_state_dict(block_norm.state_dict())
    kept = x.clone()
    with torch.inference_mode():
        apart = plain_norm.eval()(x)
        assert torch.equal(x, kept)  # the input of a norm built on its own is left alone
        together = block_norm(x)
    assert together.data_ptr() == x.data_ptr()
    assert torch.equal(together, apart)  # the same kernel, written over its input
    y = kept.clone()
    block_norm(y)  # with gradients on (training), nothing is overwritten
    assert torch.equal(y, kept)


def test_heads_run_as_one_convolution_give_each_heads_output():
    torch.manual_seed(0)
    heads = [blocks.grid_change_head(32), blocks.color_change_head(32), blocks.alpha_head(32, 4)]
    feature = torch.randn(1, 32, 64, 64)
    for layout in (torch.contiguous_format, CHANNELS_LAST):
        x = feature.contiguous(memory_format=layout)
        with torch.inference_mode():
            together = blocks.run_heads(x, *heads)
            apart = [head(x) for head in heads]
        for one, other in zip(together, apart):
            assert one.shape == other.shape
            torch.testing.assert_close(one, other, rtol=0, atol=2e-6)


def test_upsampling_into_the_joined_tensor_is_bit_exact():
    x = offset_activations((1, 64, 32, 32))
    skip = offset_activations((1, 32, 64, 64), seed=2)
    with torch.inference_mode():
        joined = blocks.upsample_and_cat(x, skip)
    plain = torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip], dim=1)
    assert joined.is_contiguous(memory_format=CHANNELS_LAST)
    assert torch.equal(joined, plain)


def test_channel_cat_keeps_channels_last_beside_pose_planes():
    image = offset_activations((1, 4, 32, 32))
    planes = blocks.pose_planes(torch.arange(6.0)[None], 32, 32)
    with torch.inference_mode():
        joined = blocks.cat_channels([image, planes])
    assert joined.is_contiguous(memory_format=CHANNELS_LAST)
    assert torch.equal(joined, torch.cat([image, planes], dim=1))


def test_training_takes_the_plain_paths_and_keeps_gradients():
    """With gradients on, the out= writes are not used (they record no gradient)."""
    x = offset_activations((1, 8, 16, 16)).requires_grad_()
    skip = offset_activations((1, 4, 32, 32), seed=3)
    joined = blocks.upsample_and_cat(x, skip)
    joined.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 4.0))


def test_the_identity_grid_is_made_once_and_serves_training_too():
    like = torch.zeros(2, 4, 24, 40)
    with torch.inference_mode():
        first = blocks.identity_grid(like)
    second = blocks.identity_grid(like)
    expected = F.affine_grid(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).expand(2, 2, 3), [2, 4, 24, 40],
                             align_corners=False)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()
    assert not second.is_inference()
    flow = torch.zeros(2, 2, 24, 40, requires_grad=True)
    warped = blocks.apply_grid_change(flow, torch.rand(2, 4, 24, 40))
    warped.sum().backward()
    assert flow.grad is not None


@pytest.mark.parametrize("align_corners", [False, True])
def test_a_warp_in_row_bands_gives_grid_samples_values_bit_for_bit(two_threads, align_corners):
    generator = torch.Generator().manual_seed(4)
    for layout in (torch.contiguous_format, CHANNELS_LAST):
        image = torch.rand(1, 4, 64, 48, generator=generator).contiguous(memory_format=layout)
        # Offsets far past the border too: border padding must hold in every band.
        flow = 0.3 * torch.randn(1, 2, 64, 48, generator=generator)
        grid = blocks.identity_grid(image, align_corners) + flow.permute(0, 2, 3, 1)
        expected = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=align_corners)
        with torch.inference_mode():
            banded = blocks.grid_sample_bands(image, grid, align_corners)
        assert banded.shape == expected.shape and torch.equal(banded, expected), layout
    # With more threads than divide the height, as many bands as do (6 threads, 64 rows: 4 bands).
    image = torch.rand(1, 4, 64, 48, generator=generator)
    grid = blocks.identity_grid(image) + 0.3 * torch.randn(1, 64, 48, 2, generator=generator)
    previous = torch.get_num_threads()
    torch.set_num_threads(6)
    try:
        banded = blocks.grid_sample_bands(image, grid)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(banded, F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False))
    # Prime heights and batches take the plain kernel, with the same values.
    odd = torch.rand(2, 3, 31, 20, generator=generator)
    grid = blocks.identity_grid(odd) + 0.1 * torch.randn(2, 31, 20, 2, generator=generator)
    assert torch.equal(blocks.grid_sample_bands(odd[:1], grid[:1]), F.grid_sample(
        odd[:1], grid[:1], mode="bilinear", padding_mode="border", align_corners=False))
    assert torch.equal(blocks.grid_sample_bands(odd, grid), F.grid_sample(
        odd, grid, mode="bilinear", padding_mode="border", align_corners=False))
    # Gradients flow through the bands (training warps single pictures too).
    image = torch.rand(1, 4, 16, 16, generator=generator, requires_grad=True)
    flow = torch.zeros(1, 16, 16, 2, requires_grad=True)
    blocks.grid_sample_bands(image, blocks.identity_grid(image) + flow).sum().backward()
    assert image.grad is not None and flow.grad is not None


def test_a_half_picture_warps_on_a_float32_grid():
    """float16 coordinates are a quarter pixel coarse near a 512 picture's edge: the warp of a half
    picture samples on a float32 grid and hands back half values (blocks.grid_dtype)."""
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(1, 4, 512, 512, generator=generator)
    flow = 0.01 * torch.randn(1, 2, 512, 512, generator=generator)
    half = blocks.apply_grid_change(flow.half(), image.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert blocks.identity_grid(image.half()).dtype == torch.float32
    # The float32 warp of the same half inputs, rounded once to half: the grid lost nothing.
    expected = blocks.apply_grid_change(flow.half().float(), image.half().float()).half()
    assert torch.equal(half, expected)


def test_a_sequential_head_keeps_its_activation():
    head = nn.Sequential(nn.Conv2d(8, 3, 3, 1, 1), nn.Tanh())
    x = torch.randn(1, 8, 16, 16)
    with torch.inference_mode():
        (out,) = blocks.run_heads(x, head)
    assert out.abs().max() <= 1.0
    torch.testing.assert_close(out, head(x).detach(), rtol=0, atol=2e-6)


def test_a_colour_heads_tanh_runs_as_a_sigmoid_in_inference_and_as_tanh_where_gradients_flow():
    head = blocks.color_change_head(8, 4)
    x = 4 * torch.randn(1, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), RecordedOps() as ops:
        (fast,) = blocks.run_heads(x, head)
    assert not any("tanh" in op for op in ops.names) and any("sigmoid" in op for op in ops.names)
    exact = torch.tanh(F.conv2d(x, head[0].weight, head[0].bias, 1, 1)).detach()
    torch.testing.assert_close(fast, exact, rtol=0, atol=3e-7)
    (trained,) = blocks.run_heads(x, head)  # gradients on: the module's own tanh
    assert trained.requires_grad and torch.equal(trained.detach(), exact)


def test_a_blend_is_one_lerp_in_inference_and_the_official_expression_where_gradients_flow():
    generator = torch.Generator().manual_seed(0)
    alpha, change, image = (torch.rand(1, c, 32, 32, generator=generator) for c in (1, 4, 4))
    official = change * alpha + image * (1 - alpha)
    with torch.inference_mode(), RecordedOps() as ops:
        blended = blocks.apply_color_change(alpha, change, image)
        rgb = blocks.apply_rgb_change(alpha, change, image)
    assert ops.names.count("aten.lerp.Tensor") == 2 and "aten.mul.Tensor" not in ops.names
    torch.testing.assert_close(blended, official, rtol=0, atol=1.2e-7)
    torch.testing.assert_close(rgb[:, :3], official[:, :3], rtol=0, atol=1.2e-7)
    assert torch.equal(rgb[:, 3:], image[:, 3:])
    alpha.requires_grad_(True)
    assert torch.equal(blocks.apply_color_change(alpha, change, image).detach(), official)


def test_heads_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="one geometry"):
        blocks.run_heads(torch.randn(1, 8, 16, 16), nn.Conv2d(8, 2, 3, 1, 1), nn.Conv2d(8, 2, 1))


@pytest.mark.parametrize("channels, size", [(8, 5), (64, 32)])
def test_a_depthwise_conv_after_nearest_doubling_equals_the_transposed_conv_at_the_low_size(channels, size):
    x = offset_activations((1, channels, size, size))
    weight = torch.randn(channels, 1, 3, 3, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        doubled = F.interpolate(x, scale_factor=2, mode="nearest")
        expected = F.conv2d(doubled, weight, None, 1, 1, 1, channels)
        ours = blocks.depthwise3_after_nearest_x2(x, weight)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=0, atol=2e-6 * expected.abs().max().item())


def test_a_depthwise_transposed_conv_by_phases_equals_the_transposed_conv():
    """The export path of a depthwise upsample block: four phase convs interleaved."""
    torch.manual_seed(0)
    channels = 24
    x, weight = torch.randn(2, channels, 7, 11), torch.randn(channels, 1, 4, 4)
    with torch.inference_mode():
        expected = F.conv_transpose2d(x, weight, None, 2, 1, 0, channels)
        ours = blocks.interleave_phases(blocks.depthwise_transposed_conv_phases(x, weight))
    assert ours.shape == expected.shape == (2, channels, 14, 22)
    torch.testing.assert_close(ours, expected, rtol=0, atol=2e-6 * expected.abs().max().item())


def test_a_resize_conv_block_gives_the_same_values_in_both_layouts():
    torch.manual_seed(0)
    block = blocks.resize_conv_block(32, 16, blocks.leaky_relu, separable=True).eval()
    x = offset_activations((1, 32, 24, 24))
    with torch.inference_mode():
        channels_last = block(x)  # the transposed-conv path
        plain = block(x.contiguous())  # resize, then the depthwise conv
    assert channels_last.is_contiguous(memory_format=CHANNELS_LAST)
    torch.testing.assert_close(channels_last, plain, rtol=0, atol=2e-5)


def test_a_decoder_block_over_upsampled_and_skip_channels_equals_it_over_the_joined_tensor():
    torch.manual_seed(0)
    block = blocks.conv_block(48 + 16, 16, 3, 1, blocks.leaky_relu, separable=True).eval()
    x, skip = offset_activations((1, 48, 12, 12)), offset_activations((1, 16, 24, 24), seed=2)
    with torch.inference_mode():
        split = blocks.upsample_cat_conv_block(block, x, skip)  # never joins the two
        joined = block(blocks.upsample_and_cat(x.contiguous(), skip.contiguous()))
    assert split.is_contiguous(memory_format=CHANNELS_LAST)
    torch.testing.assert_close(split, joined.contiguous(memory_format=CHANNELS_LAST), rtol=0, atol=2e-5)


@pytest.mark.parametrize("in_channels, out_channels, kernel_size, stride",
                         [(48, 40, 1, 1), (16, 24, 3, 1), (16, 32, 4, 2), (64, 64, 1, 1)])
def test_a_conv_with_weights_reordered_once_gives_the_plain_convs_values_bit_for_bit(
        in_channels, out_channels, kernel_size, stride):
    torch.manual_seed(0)
    if kernel_size == 1:
        conv = blocks.conv(in_channels, out_channels, 3, 1, separable=True)[1]  # a block's pointwise conv
    else:
        (conv,) = blocks.conv(in_channels, out_channels, kernel_size, stride)
    assert isinstance(conv, blocks.PackedConv2d)
    x = offset_activations((1, in_channels, 20, 20))
    with torch.no_grad():
        packed = conv(x)
        plain = F.conv2d(x, conv.weight, None, conv.stride, conv.padding)
    assert "weight" in blocks._PACKED_WEIGHTS.get(conv, {}), "the reordered weights were not used"
    assert packed.is_contiguous(memory_format=CHANNELS_LAST)
    assert torch.equal(packed, plain)


def test_an_upsample_blocks_pointwise_conv_reorders_its_weights_once_too():
    # THA3's face morpher and eyebrow combiner decoders: transposed depthwise, then this conv.
    torch.manual_seed(0)
    transposed, conv = blocks.conv_transpose(32, 16, separable=True)
    assert isinstance(conv, blocks.PackedConv2d)
    with torch.no_grad():
        x = transposed(offset_activations((1, 32, 10, 10)))
        packed = conv(x)
        plain = F.conv2d(x, conv.weight)
    assert "weight" in blocks._PACKED_WEIGHTS.get(conv, {}), "the reordered weights were not used"
    assert torch.equal(packed, plain)


def test_reordered_weights_follow_a_change_of_the_weights():
    torch.manual_seed(0)
    conv = blocks.conv(32, 16, 3, 1, separable=True)[1]
    x = offset_activations((1, 32, 8, 8))
    with torch.no_grad():
        conv(x)
        conv.load_state_dict({"weight": torch.randn_like(conv.weight)})  # copies in place
        after_load = conv(x)
        assert torch.equal(after_load, F.conv2d(x, conv.weight))
        conv.weight.mul_(-2.0)
        assert torch.equal(conv(x), F.conv2d(x, conv.weight))
        larger = offset_activations((1, 32, 12, 12))  # another input shape: reordered for it
        assert torch.equal(conv(larger), F.conv2d(larger, conv.weight))


def test_training_and_nchw_convs_take_the_plain_module():
    conv = blocks.conv(8, 8, 3, 1, separable=True)[1]
    x = offset_activations((1, 8, 8, 8))
    conv(x).sum().backward()  # gradients on
    assert conv.weight.grad is not None
    with torch.no_grad():
        conv(x.contiguous())  # NCHW
        torch.backends.mkldnn.enabled = False  # oneDNN switched off by the user
        try:
            assert torch.equal(conv(x), F.conv2d(x, conv.weight))
        finally:
            torch.backends.mkldnn.enabled = True
    assert conv not in blocks._PACKED_WEIGHTS


def test_a_decoder_blocks_second_half_adds_into_the_first_exactly_as_a_separate_add(monkeypatch):
    torch.manual_seed(0)
    block = blocks.conv_block(48 + 16, 16, 3, 1, blocks.leaky_relu, separable=True).eval()
    x, skip = offset_activations((1, 48, 12, 12)), offset_activations((1, 16, 24, 24), seed=2)
    with torch.no_grad():
        fused = blocks.upsample_cat_conv_block(block, x, skip)
        assert {"upsampled half", "skip half"} <= set(blocks._PACKED_WEIGHTS[block[1]])
        monkeypatch.setitem(blocks._ONEDNN, "usable", False)  # the plain convs and add_
        separate = blocks.upsample_cat_conv_block(block, x, skip)
    assert torch.equal(fused, separate)


def test_a_module_that_has_posed_still_copies_and_saves(tmp_path):
    conv = blocks.conv(16, 8, 3, 1, separable=True)[1]
    x = offset_activations((1, 16, 8, 8))
    with torch.no_grad():
        posed = conv(x)
    assert conv in blocks._PACKED_WEIGHTS
    copied = copy.deepcopy(conv)
    torch.save(conv.state_dict(), tmp_path / "weights.pt")
    torch.save(conv, tmp_path / "module.pt")
    with torch.no_grad():
        assert torch.equal(copied(x), posed)


@pytest.mark.parametrize("separable", [True, False])
def test_a_resnet_block_sums_into_its_paths_output_bit_for_bit_and_leaves_its_input(separable):
    torch.manual_seed(3)
    block = blocks.ResnetBlock(32, blocks.leaky_relu, separable).eval()
    x = offset_activations((1, 32, 24, 24))
    kept = x.clone()
    path_outputs = []
    block.resnet_path.register_forward_hook(lambda module, args, output: path_outputs.append(output))
    with torch.no_grad():
        expected = x + block.resnet_path(x.clone())
        ours = block(x)
    assert ours.data_ptr() == path_outputs[-1].data_ptr()  # summed where the path wrote
    assert torch.equal(x, kept)
    assert ours.is_contiguous(memory_format=CHANNELS_LAST)
    assert torch.equal(ours, expected)
    with torch.enable_grad():  # training: a plain sum that keeps the graph
        y = x.clone().requires_grad_()
        block(y).sum().backward()
    assert y.grad is not None


@pytest.mark.parametrize("channels, outputs, size", [(64, 2, 33), (16, 3, 8)])
def test_a_head_summed_by_taps_equals_its_conv_up_to_rounding_borders_too(channels, outputs, size):
    torch.manual_seed(4)
    head = nn.Conv2d(channels, outputs, 3, 1, 1, bias=False)
    x = offset_activations((1, channels, size, size + 5))
    with torch.inference_mode():
        assert blocks.conv3x3_by_taps_applies(x)
        ours = blocks.conv3x3_by_taps(x, head.weight, head)
        again = blocks.conv3x3_by_taps(x, head.weight, head)
        exact = F.conv2d(x.double(), head.weight.double(), None, 1, 1)
    assert ours.shape == exact.shape and torch.equal(ours, again)
    # Every pixel, the zero-padded border rows and columns too, within float32 rounding of the sum.
    torch.testing.assert_close(ours.double(), exact, rtol=0, atol=2e-6 * exact.abs().max().item())
    assert {"per tap"} <= set(blocks._PACKED_WEIGHTS[head]), "the per-tap weights were not reordered once"


def test_the_taps_path_is_for_channels_last_inference_only_and_follows_a_change_of_weights():
    head = nn.Conv2d(8, 2, 3, 1, 1, bias=False)
    x = offset_activations((1, 8, 6, 6))
    assert not blocks.conv3x3_by_taps_applies(x.contiguous())  # NCHW
    assert not blocks.conv3x3_by_taps_applies(x)  # gradients on
    with torch.no_grad():
        before = blocks.conv3x3_by_taps(x, head.weight, head)
        head.weight.mul_(2)  # load_state_dict or an optimiser step
        after = blocks.conv3x3_by_taps(x, head.weight, head)
    torch.testing.assert_close(after, 2 * before, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="3x3"):
        blocks.conv3x3_by_taps(x, torch.zeros(2, 8, 1, 1), head)
    with torch.inference_mode():  # weights made in inference mode (no version counter) serve too
        inference_weight = head.weight.clone()
        torch.testing.assert_close(blocks.conv3x3_by_taps(x, inference_weight, head), after, rtol=0, atol=0)
