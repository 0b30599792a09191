"""The named building blocks the THA networks are composed of (shared/reference/tha.md §1).

Attribute names and `nn.Sequential` positions are chosen so that the state_dict keys equal the
official ones (`X.0.weight` for a block's conv, `X.1.weight/bias` for its InstanceNorm, ...):
that is what lets official weight files load with strict=True. Every body conv has no bias;
every norm is InstanceNorm2d(affine=True) without running statistics.

A "separable" conv is a depthwise conv followed by a 1x1 pointwise conv (THA3 separable
variants); in a block it takes two Sequential slots, so the norm moves from `.1` to `.2`.

Activations are passed as factories (a callable returning a fresh module) because the
networks differ: ReLU in the THA2-era nets, LeakyReLU(0.1) in the THA3 rotator and editor.
"""

import functools
import warnings
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# Eager-inference speed-ups that a benchmark switches off one at a time, to measure in a frame what
# each is worth (bench/bench_speedups.py). The product never changes them; switched off, each takes
# the plain path the code takes anyway where it does not apply (NCHW, gradients, export).
SPEEDUPS = {
    "packed_weights": True,  # packed_conv2d: conv weights reordered for oneDNN once, not every call
    "norm_in_place": True,  # InstanceNorm.channels_last: a block's norm writes over its conv's output
    "resnet_sum_in_place": True,  # ResnetBlock: the sum lands in the path's output
    "banded_warp": True,  # grid_sample_bands: a lone picture's warp in row bands, one per thread
    "resize_as_transposed_conv": True,  # ResizeConvBlock: nearest x2 + depthwise 3x3 as one conv
    "join_free_decoder": True,  # upsample_cat_conv_block: the U-Net's join never made
    "tanh_as_sigmoid": True,  # run_heads: a colour head's tanh as 2 sigmoid(2x) - 1
    "blend_as_lerp": True,  # apply_color_change: the blend as one torch.lerp
    "flow_head_by_taps": True,  # conv3x3_by_taps: a 2-channel flow head as one 1x1 conv and shifted sums
}


def relu():
    # In place: every activation follows a norm whose output nothing else reads.
    return nn.ReLU(inplace=True)


def leaky_relu():
    """The THA3 rotator's and editor's activation."""
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


class InstanceNorm(nn.InstanceNorm2d):
    """InstanceNorm2d(affine=True) with the same state_dict keys, computed the fastest precise
    way for the tensor at hand: as a group norm with one channel per group on contiguous (NCHW)
    tensors (PyTorch's CPU group norm is several times faster than its instance norm there, and
    as precise), by `channels_last` on NHWC ones, spelt out (`centred_first`) when exported or
    compiled.
    """

    use_group_norm = True  # benchmarks switch it off to measure the plain kernel
    # Set by `instance_norm`, whose norms all follow a convolution: its output is a temporary
    # that nothing else reads, so the channels-last path may normalise it in place.
    overwrites_input = False

    def forward(self, x):
        if torch.compiler.is_exporting() or torch.compiler.is_compiling():
            return self.centred_first(x)
        if self.use_group_norm and x.dim() == 4 and x.is_contiguous():
            return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            return self.channels_last(x)
        return super().forward(x)

    def channels_last(self, x):
        """The norm of an NHWC tensor without turning it NCHW and back (two copies that cost
        more than the norm). PyTorch's own channels-last batch and group norms sum squares in
        float and lose up to 1e-4 of the normalised value over a 512x512 plane, which the warps
        downstream turn into 2e-3 in the final picture; here the mean is summed by rows, then
        the squared deviations from it, as the NCHW kernels do."""
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1)  # (N, H, W, C), a view
        # (The small ops in place or as views: a THA3 frame has 70 norms, many on 16x16 planes.)
        mean = rows.sum(2).sum(1).div_(h * w)  # (N, C)
        deviation = F.mse_loss(rows, mean.view(n, 1, 1, c).expand_as(rows), reduction="none")
        variance = deviation.sum(2).sum(1).div_(h * w)
        scale = torch.rsqrt(variance.add_(self.eps)) * self.weight  # (N, C)
        shift = torch.addcmul(self.bias, mean, scale, value=-1)
        scale, shift = scale.view(n, c, 1, 1), shift.view(n, c, 1, 1)
        if self.overwrites_input and SPEEDUPS["norm_in_place"] and _keeps_channels_last(x):
            # Written over its input: no fresh output, a pass less to memory. (addcmul, not
            # batch norm's transform given the statistics: the same sum, 2-2.5x faster on NHWC.)
            return torch.addcmul(shift, x, scale, out=x)
        return torch.addcmul(shift, x, scale)

    def centred_first(self, x):
        """The same norm spelt out, for export and compilation: ONNX Runtime's
        InstanceNormalization loses about 5e-5 (relative) where a channel's mean is a few times
        its spread (THA3's first blocks; centring its input first does not help), and the warps
        downstream turn that into 4e-4 in the final picture. Centring before squaring, and
        averaging rows before columns, keeps the statistics within float32 rounding."""
        mean = x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)
        centred = x - mean
        variance = (centred * centred).mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)
        scale = torch.rsqrt(variance + self.eps) * self.weight.view(1, -1, 1, 1)
        return centred * scale + self.bias.view(1, -1, 1, 1)


def instance_norm(channels):
    """The norm of a block, right after its convolution (see InstanceNorm.overwrites_input)."""
    norm = InstanceNorm(channels, affine=True)
    norm.overwrites_input = True
    return norm


def conv(in_channels, out_channels, kernel_size, stride=1, separable=False):
    """The convolution(s) of a block, without norm or activation, as a list of modules.

    Plain: one Conv2d with padding k//2 (k=4 with stride 2 uses padding 1).
    Separable: depthwise Conv2d (groups=in) then pointwise 1x1 Conv2d.
    """
    padding = 1 if kernel_size == 4 else kernel_size // 2
    if not separable:
        return [PackedConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)]
    return [
        nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=False),
        PackedConv2d(in_channels, out_channels, 1, bias=False),
    ]


# oneDNN computes a conv with its weights in a blocked layout of its own; handed PyTorch's plain
# weights it reorders them on every call, which costs a tenth of a THA3 pointwise conv at the
# bottleneck. Inference on channels-last tensors hands it weights it reordered once: the same
# kernel and sums, bit for bit (tests/neural/test_blocks.py), 1-3% of a random THA3 frame on the CPU
# (bench/bench_speedups.py, two runs), for a second copy of those weights (54 MiB of THA3 separable's 55). The ops
# are PyTorch's own (those its compiler's frozen CPU graphs call).
_ONEDNN = {"usable": torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
           and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")}
# Per module, outside it: oneDNN's tensors cannot be copied or pickled, and a module must stay
# both (deepcopy, torch.save) after it has posed.
_PACKED_WEIGHTS = weakref.WeakKeyDictionary()


def _packs_weights(x, weight):
    # Inference tensors keep no version counter, so a packed copy could not notice a change; and
    # where oneDNN is switched off (torch.backends.mkldnn.enabled), the plain conv runs without it.
    return (_ONEDNN["usable"] and SPEEDUPS["packed_weights"] and x.dtype == weight.dtype == torch.float32
            and x.device.type == "cpu"
            and not weight.is_inference() and torch.backends.mkldnn.enabled and _keeps_channels_last(x))


def packed_conv2d(x, weight, owner, name, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, add_to=None):
    """conv2d(x, weight) without bias, through oneDNN with `weight` reordered once for x's shape
    and kept for `owner` under `name` until the weight changes (kept_from_weight).
    With `add_to`, the conv's output is added into that tensor (in the same kernel when packed;
    returned). Where `_packs_weights(x, weight)` does not hold, or oneDNN refuses (which turns
    the packed path off for the process, with a warning), the plain conv answers."""
    if _packs_weights(x, weight):
        try:
            packed = kept_from_weight(owner, name, weight, lambda: torch.ops.mkldnn._reorder_convolution_weight(
                weight.contiguous(), list(padding), list(stride), list(dilation), groups, list(x.shape)),
                also=tuple(x.shape))
            args = (packed, None, list(padding), list(stride), list(dilation), groups)
            if add_to is None:
                return torch.ops.mkldnn._convolution_pointwise(x, *args, "none", [], "")
            return torch.ops.mkldnn._convolution_pointwise_.binary(add_to, x, *args, "add", None, None, [], None)
        except RuntimeError as error:
            _ONEDNN["usable"] = False
            _PACKED_WEIGHTS.pop(owner, None)
            warnings.warn(f"oneDNN refused a conv with reordered weights ({error}); plain convs from now on")
    y = F.conv2d(x, weight, None, stride, padding, dilation, groups)
    return y if add_to is None else add_to.add_(y)


def kept_from_weight(owner, name, weight, make, also=()):
    """make()'s result (a tensor made from `weight`: reordered, rearranged), kept for `owner` (a
    module; in `_PACKED_WEIGHTS`) under `name` until the weight (or `also`, say the input's
    shape) changes. The kept entry holds the weight it was made from, so no other tensor can take
    its address; an in-place change (load_state_dict, an optimiser) moves its version. An
    inference tensor keeps no version counter: its result is made every call."""
    if weight.is_inference():
        return make()
    cache = _PACKED_WEIGHTS.setdefault(owner, {})
    key = (also, tuple(weight.shape), tuple(weight.stride()), weight.data_ptr(), weight._version)
    kept = cache.get(name)
    if kept is None or kept[0] != key:
        kept = cache[name] = (key, weight, make())
    return kept[2]


class PackedConv2d(nn.Conv2d):
    """nn.Conv2d (the same parameters and keys) whose convs without bias go through
    `packed_conv2d`: reordered weights for channels-last inference, the plain conv otherwise
    (NCHW, gradients, export)."""

    def forward(self, x):
        if self.bias is None and self.padding_mode == "zeros":
            return packed_conv2d(x, self.weight, self, "weight", self.stride, self.padding, self.dilation, self.groups)
        return super().forward(x)


def conv_transpose(in_channels, out_channels, separable=False):
    """A x2 upsampling ConvTranspose2d(4, stride 2, padding 1); separable: depthwise then 1x1."""
    if not separable:
        return [nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)]
    return [
        nn.ConvTranspose2d(in_channels, in_channels, 4, 2, 1, groups=in_channels, bias=False),
        PackedConv2d(in_channels, out_channels, 1, bias=False),
    ]


def conv_block(in_channels, out_channels, kernel_size=3, stride=1, activation=relu, separable=False):
    """conv (+ pointwise when separable) + InstanceNorm + activation, as one Sequential."""
    return nn.Sequential(
        *conv(in_channels, out_channels, kernel_size, stride, separable),
        instance_norm(out_channels),
        activation(),
    )


def downsample_block(in_channels, out_channels, activation=relu, separable=False):
    """Halves the resolution: 4x4 stride-2 conv + InstanceNorm + activation."""
    return conv_block(in_channels, out_channels, 4, 2, activation, separable)


def upsample_block(in_channels, out_channels, activation=relu, separable=False):
    """Doubles the resolution: 4x4 stride-2 transposed conv + InstanceNorm + activation."""
    return UpsampleBlock(
        *conv_transpose(in_channels, out_channels, separable),
        instance_norm(out_channels),
        activation(),
    )


class UpsampleBlock(nn.Sequential):
    """A transposed conv block. Exported (ONNX), a depthwise transposed conv runs as four
    depthwise 3x3 convs, one per output phase (`depthwise_transposed_conv_phases`), and the
    pointwise conv after it on each phase before they are interleaved (a 1x1 conv does not mind
    where a pixel sits): ONNX Runtime's depthwise ConvTranspose is its slowest op for its work
    (128 channels at 96²: 11-17 ms; the phases 4-6 ms), and interleaving the pointwise conv's
    output moves half the data, with no reorder of the doubled tensor for its NCHWc conv.
    Elsewhere the block as it is."""

    def forward(self, x):
        transposed, *rest = self
        if not (torch.compiler.is_exporting() and _is_depthwise_transposed4(transposed)):
            return super().forward(x)
        return _by_phases(x, transposed.weight, rest)


def _by_phases(x, depthwise_weight, rest):
    """rest(conv_transpose2d(x, depthwise_weight, stride 2, padding 1)) with the transposed conv
    as its four phases, a pointwise conv at the head of `rest` applied to each phase, then the
    phases interleaved and the rest of the layers applied."""
    phases = depthwise_transposed_conv_phases(x, depthwise_weight)
    if rest and _is_pointwise(rest[0]):
        pointwise, *rest = rest
        phases = [[pointwise(phase) for phase in row] for row in phases]
    x = interleave_phases(phases)
    for layer in rest:
        x = layer(x)
    return x


def _is_pointwise(layer):
    return (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.stride == (1, 1)
            and layer.padding == (0, 0) and layer.groups == 1)


def _is_depthwise_transposed4(layer):
    return (isinstance(layer, nn.ConvTranspose2d) and layer.groups == layer.in_channels == layer.out_channels
            and layer.kernel_size == (4, 4) and layer.stride == (2, 2) and layer.padding == (1, 1)
            and layer.output_padding == (0, 0) and layer.dilation == (1, 1) and layer.bias is None)


# A transposed conv (4x4, stride 2, padding 1) gives output row 2i source rows i-1 and i through
# kernel rows 3 and 1, and row 2i+1 rows i and i+1 through kernel rows 2 and 0: per output row
# phase, a 3x3 conv (padding 1) at the source size whose three rows take these kernel rows.
# Columns alike.
_PHASE_TAPS = (
    ((0.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)),  # even output rows
    ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (1.0, 0.0, 0.0, 0.0)),  # odd output rows
)


def depthwise_transposed_conv_phases(x, weight):
    """conv_transpose2d(x, weight, stride 2, padding 1, groups=channels) for a depthwise 4x4
    weight (C, 1, 4, 4), as its four output phases [[even rows: even, odd columns], [odd rows:
    ...]], each a depthwise 3x3 conv at x's size (the same products, summed in another order:
    1e-7 relative); `interleave_phases` makes the output of them."""
    taps = torch.tensor(_PHASE_TAPS, dtype=weight.dtype, device=weight.device)
    return [[F.conv2d(x, row_taps @ weight @ column_taps.T, None, 1, 1, 1, x.shape[1]) for column_taps in taps]
            for row_taps in taps]


def interleave_phases(phases):
    """The (N, C, 2H, 2W) tensor whose pixel (2i + a, 2j + b) is phases[a][b]'s pixel (i, j),
    by stacking on new axes (ONNX Runtime's DepthToSpace and Transpose take 2-6 times as long)."""
    n, c, h, w = phases[0][0].shape
    rows = [torch.stack(row, dim=-1).reshape(n, c, h, 1, 2 * w) for row in phases]  # columns interleaved
    return torch.cat(rows, dim=3).reshape(n, c, 2 * h, 2 * w)  # rows interleaved


def resize_conv_block(in_channels, out_channels, activation=relu, separable=False):
    """Doubles the resolution: nearest x2 resize, then a 3x3 conv block (keys `.1.*`)."""
    return ResizeConvBlock(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv_block(in_channels, out_channels, 3, 1, activation, separable),
    )


class ResizeConvBlock(nn.Sequential):
    """A nearest x2 resize and a conv block. When the block is separable, the resize and the
    depthwise 3x3 conv are one depthwise 4x4 transposed conv at the low resolution
    (`nearest_x2_kernel`): the doubled image is never made, and the conv takes 4 taps a pixel
    instead of 9. In channels-last eager inference it runs as that transposed conv; exported
    (ONNX), by its phases as in `UpsampleBlock`, the pointwise conv on each: ONNX Runtime
    otherwise resized the image and reordered the doubled tensor for its NCHWc conv (the
    rotator's last block 17.8 ms before its norm)."""

    def forward(self, x):
        resize, (depthwise, *rest) = self
        nearest_x2 = isinstance(resize, nn.Upsample) and resize.mode == "nearest" and resize.scale_factor == 2
        if not (nearest_x2 and _is_depthwise3(depthwise)):
            return super().forward(x)
        if torch.compiler.is_exporting():
            return _by_phases(x, nearest_x2_kernel(depthwise.weight), rest)
        if SPEEDUPS["resize_as_transposed_conv"] and _keeps_channels_last(x):
            x = depthwise3_after_nearest_x2(x, depthwise.weight)
            for layer in rest:
                x = layer(x)
            return x
        return super().forward(x)


def _is_depthwise3(layer):
    return (isinstance(layer, nn.Conv2d) and layer.groups == layer.in_channels == layer.out_channels
            and layer.kernel_size == (3, 3) and layer.stride == (1, 1) and layer.padding == (1, 1)
            and layer.dilation == (1, 1) and layer.bias is None)


# A transposed conv (stride 2, padding 1) carries source row i to output row 2i + p - 1 through
# its kernel row p; over the doubled image that output row reads source row i through 3x3 taps
# 2 (p=0), 1 and 2 (p=1), 0 and 1 (p=2), 0 (p=3). Columns alike.
_NEAREST_X2_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def depthwise3_after_nearest_x2(x, weight):
    """conv2d(nearest x2 upsampling of x, weight, padding 1, groups=channels) for a depthwise
    3x3 weight (C, 1, 3, 3), as conv_transpose2d(x, 4x4 weight, stride 2, padding 1): each
    output pixel reads 2x2 source pixels, with the taps that fall on one source pixel summed.
    Equal up to float rounding (the summed taps), 1e-7 relative."""
    return F.conv_transpose2d(x, nearest_x2_kernel(weight), None, 2, 1, 0, weight.shape[0])


def nearest_x2_kernel(weight):
    """The 4x4 transposed-conv weight (C, 1, 4, 4) equal to nearest x2 doubling and then the
    depthwise 3x3 `weight` (C, 1, 3, 3) with padding 1 (see `depthwise3_after_nearest_x2`)."""
    taps = torch.tensor(_NEAREST_X2_TAPS, dtype=weight.dtype, device=weight.device)
    return taps @ weight @ taps.T


class ResnetBlock(nn.Module):
    """x + (conv3, IN, act, conv3, IN)(x), no activation after the sum (THA2+ naming).

    Separable: each conv3 is Sequential(depthwise, pointwise), hence `resnet_path.0.0/.0.1`.
    """

    def __init__(self, channels, activation=relu, separable=False):
        super().__init__()

        def conv3():
            layers = conv(channels, channels, 3, 1, separable)
            return nn.Sequential(*layers) if separable else layers[0]

        self.resnet_path = nn.Sequential(
            conv3(), instance_norm(channels), activation(), conv3(), instance_norm(channels)
        )

    def forward(self, x):
        path = self.resnet_path(x)
        if SPEEDUPS["resnet_sum_in_place"] and _keeps_channels_last(path):
            # Into the path's own output, a temporary (its last norm wrote over its conv's):
            # no fresh tensor a block. The same sum, bit for bit.
            return path.add_(x)
        return x + path


class LegacyResnetBlock(nn.Module):
    """THA1's ResNet block (also in THA2's back-compatible rotator and combiner).

    x + norm2(conv2(relu(norm1(conv1(x))))), attributes conv1, norm1, conv2, norm2.
    """

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm1 = instance_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm2 = instance_norm(channels)

    def forward(self, x):
        return x + self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))


# Output heads: never separable, even in the separable variants.


def alpha_head(in_channels, out_channels=1):
    """Conv3 with bias + sigmoid (keys `.0.weight`, `.0.bias`)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=True), nn.Sigmoid())


def color_change_head(in_channels, out_channels=4):
    """Conv3 with bias + tanh (keys `.0.weight`, `.0.bias`)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=True), nn.Tanh())


def grid_change_head(in_channels):
    """Conv3 without bias to a 2-channel flow offset (key `.weight`)."""
    return nn.Conv2d(in_channels, 2, 3, 1, 1, bias=False)


def run_heads(feature, *heads):
    """The heads' outputs over one feature map, in order, computed as one convolution.

    A head's conv makes 1 to 4 channels, which a CPU convolution kernel fills poorly: the
    editor's three heads cost as much as a full-width conv each. Their weights stacked make one
    conv whose channel slices are the heads' own convs (each output channel is the same sum),
    followed by each head's activation. Exported graphs hold the same single conv (ONNX
    Runtime pads a conv's outputs to 16 channels: heads of 1 to 4 channels cost the same as 16
    each), with the stacked weights folded into one constant when a session starts."""
    convs = [head[0] if isinstance(head, nn.Sequential) else head for head in heads]
    geometry = {(conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups) for conv in convs}
    if len(geometry) != 1:
        raise ValueError(f"heads run as one conv need one geometry, got {sorted(geometry)}")
    (kernel, stride, padding, dilation, groups), = geometry
    weight = torch.cat([conv.weight for conv in convs])
    # torch.zeros, not weight.new_zeros: exported, the latter is a CastLike that ONNX Runtime does
    # not fold, and a conv with a computed bias misses its fast (NCHWc) kernels.
    bias = torch.cat([conv.bias if conv.bias is not None else
                      torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device)
                      for conv in convs])
    stacked = F.conv2d(feature, weight, bias, stride, padding, dilation, groups)
    outputs, start = [], 0
    for head, conv in zip(heads, convs):
        # Made contiguous: activations and blends run several times slower on a strided slice.
        output = stacked[:, start : start + conv.out_channels].contiguous()
        start += conv.out_channels
        if isinstance(head, nn.Sequential):
            for activation in head[1:]:
                output = _activate(activation, output)
        outputs.append(output)
    return outputs


def conv3x3_by_taps_applies(x):
    """Whether conv3x3_by_taps computes a head over the feature x (channels-last CPU inference,
    the switch on); elsewhere a head's own conv runs."""
    return SPEEDUPS["flow_head_by_taps"] and _keeps_channels_last(x) and x.device.type == "cpu"


def conv3x3_by_taps(x, weight, owner):
    """conv2d(x, weight, padding 1) without bias, for a 3x3 weight of few output channels (a flow
    head's 2) over a feature where conv3x3_by_taps_applies.

    oneDNN pads a conv's outputs to 16 channels: a 2-channel 3x3 conv costs what a 16-channel one
    does (6.6 ms over the THA3 rotator's 64x256x256 feature). Here one 1x1 conv makes each of the
    9 taps' outputs (18 channels, cheap), and the taps' shifted views are summed: 3.1 ms, each
    output the sum of 9 partial sums (1e-6 from the float64 conv there, oneDNN's own 6e-6).
    `owner` keeps the weight rearranged (and reordered for oneDNN) between calls."""
    outputs, _, h_kernel, w_kernel = weight.shape
    if (h_kernel, w_kernel) != (3, 3):
        raise ValueError(f"conv3x3_by_taps takes a 3x3 weight, not {h_kernel}x{w_kernel}")

    def rearranged():
        # (tap, output) rows: the 1x1 conv's channel `outputs * t + o` is output o's part through
        # tap t. Made outside inference mode: an inference tensor is never reordered (_packs_weights).
        with torch.inference_mode(False), torch.no_grad():
            return weight.permute(2, 3, 0, 1).reshape(9 * outputs, -1, 1, 1).contiguous()

    per_tap = kept_from_weight(owner, "per tap, rearranged", weight, rearranged)
    h, w = x.shape[2:]
    taps = F.pad(packed_conv2d(x, per_tap, owner, "per tap"), (1, 1, 1, 1))  # the conv's zero padding
    total = None
    for tap in range(9):
        dy, dx = divmod(tap, 3)
        view = taps[:, tap * outputs : (tap + 1) * outputs, dy : dy + h, dx : dx + w]
        total = view.contiguous() if total is None else total.add_(view)
    return total


def _activate(activation, output):
    """activation(output), for a head's output that nothing else reads."""
    if isinstance(activation, nn.Tanh) and SPEEDUPS["tanh_as_sigmoid"] and _eager_cpu_inference(output):
        # tanh(x) = 2 sigmoid(2x) - 1, in place: PyTorch's CPU tanh takes 6-7x its sigmoid's time
        # (1.9 against 0.27 ms on the editor's 4x512x512), the four passes together 0.6 ms. Within
        # 2e-7 of tanh (the rounding of 1 near 0), on colour changes only.
        return output.mul_(2).sigmoid_().mul_(2).sub_(1)
    return activation(output)


class PoserEncoderDecoder(nn.Module):
    """THA2/THA3's encoder-decoder where the pose enters only at the bottleneck.

    Conv3 block at full size; downsample blocks doubling channels (capped at max_channels) to
    the bottleneck size; bottleneck block 0 is a conv block over features + pose planes, then
    ResNet blocks; upsample blocks back to `start_channels`. Because the pose enters only at
    the bottleneck, `encode` (pose-independent) and `decode` can run separately.
    """

    def __init__(
        self,
        image_size,
        in_channels,
        pose_size,
        start_channels=64,
        bottleneck_size=16,
        bottleneck_blocks=6,
        max_channels=512,
        activation=relu,
        separable=False,
    ):
        super().__init__()
        self.pose_size = pose_size

        def channels_at(size):
            # Channels double each time the size halves, capped (the official rule).
            return min(start_channels * (image_size // size), max_channels)

        self.downsample_blocks = nn.ModuleList([conv_block(in_channels, start_channels, 3, 1, activation, separable)])
        size = image_size
        while size > bottleneck_size:
            self.downsample_blocks.append(downsample_block(channels_at(size), channels_at(size // 2), activation, separable))
            size //= 2
        channels = channels_at(bottleneck_size)
        self.bottleneck_blocks = nn.ModuleList([conv_block(channels + pose_size, channels, 3, 1, activation, separable)])
        for _ in range(bottleneck_blocks - 1):
            self.bottleneck_blocks.append(ResnetBlock(channels, activation, separable))
        self.upsample_blocks = nn.ModuleList()
        while size < image_size:
            self.upsample_blocks.append(upsample_block(channels_at(size), channels_at(size * 2), activation, separable))
            size *= 2

    def encode(self, image):
        feature = image
        for block in self.downsample_blocks:
            feature = block(feature)
        return feature

    def decode(self, encoded, pose=None):
        feature = encoded
        if self.pose_size:
            n, _, h, w = encoded.shape
            planes = pose.view(n, self.pose_size, 1, 1).expand(n, self.pose_size, h, w)
            feature = cat_channels([feature, planes.to(feature.dtype)])
        for block in self.bottleneck_blocks:
            feature = block(feature)
        for block in self.upsample_blocks:
            feature = block(feature)
        return feature

    def forward(self, image, pose=None):
        return self.decode(self.encode(image), pose)


# Image operations shared by the networks.


def pose_planes(pose, height, width):
    """A (n, p) pose vector as p constant planes of height x width."""
    n, p = pose.shape
    return pose.view(n, p, 1, 1).expand(n, p, height, width)


def apply_color_change(alpha, color_change, image):
    """color_change where alpha is 1, image where it is 0 (THA2+ convention)."""
    if SPEEDUPS["blend_as_lerp"] and _eager_cpu_inference(image):
        # One pass instead of four (0.16 against 1.2 ms on a 4x512x512 picture), a rounding apart
        # (6e-8). The official expression where gradients flow or a graph is made.
        return torch.lerp(image, color_change, alpha)
    return color_change * alpha + image * (1 - alpha)


def apply_rgb_change(alpha, color_change, image):
    """apply_color_change on RGB only; the image keeps its own alpha channel."""
    if SPEEDUPS["blend_as_lerp"] and _eager_cpu_inference(image):
        rgb = torch.lerp(image[:, 0:3], color_change[:, 0:3], alpha)
    else:  # (spelt out as it was: exported graphs stay the shipped ones node for node)
        rgb = color_change[:, 0:3] * alpha + image[:, 0:3] * (1 - alpha)
    return torch.cat([rgb, image[:, 3:4]], dim=1)


def grid_dtype(like):
    """The dtype warps sample in: float32 for half pictures. A float16 coordinate near the
    picture's edge is 2^-10 from its neighbours, a quarter pixel at 512: sampled there, sharp
    edges moved by up to 0.25 of the range (measured on an H200, THA3 in float16)."""
    return torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype


def identity_grid(like, align_corners=False):
    """The (n, h, w, 2) sampling grid that reproduces `like` (n, c, h, w); float32 for a half
    `like` (grid_dtype), so that adding a half flow to it gives a float32 grid."""
    n, c, h, w = like.shape
    dtype = grid_dtype(like)
    if torch.compiler.is_exporting() or torch.compiler.is_compiling():
        # A constant in the graph: exported or compiled, affine_grid's linspace is rebuilt from
        # other ops and lands an ulp off in places, which the warps turn into ~3e-5 in the picture.
        grid = torch.from_numpy(affine_identity_grid(h, w, align_corners)).to(dtype)
        return grid.expand(n, -1, -1, -1)
    # Made once per size: every frame warps with the same identity.
    key = (h, w, align_corners, dtype, like.device)
    grid = _IDENTITY_GRIDS.get(key)
    if grid is None:
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable in training too
            identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=dtype, device=like.device)
            grid = _IDENTITY_GRIDS[key] = F.affine_grid(identity, [1, c, h, w], align_corners=align_corners)
    return grid.expand(n, -1, -1, -1)


_IDENTITY_GRIDS = {}


def affine_identity_grid(h, w, align_corners=False):
    """affine_grid(identity)'s (1, h, w, 2) float32 values, bit for bit, in numpy: torch's
    linspace(-1, 1) (from both ends, the step in float32, each value rounded once), scaled by
    (n - 1) / n without align_corners."""

    def axis(size):
        if size == 1:
            return np.zeros(1, np.float32)
        step = np.float32(2) / np.float32(size - 1)
        index = np.arange(size)
        values = np.where(index < size // 2, -1.0 + step * index, 1.0 - step * (size - 1 - index)).astype(np.float32)
        if not align_corners:
            values = values * np.float32(size - 1) / np.float32(size)
        return values.astype(np.float32)

    grid = np.empty((1, h, w, 2), np.float32)
    grid[..., 0] = axis(w)[None, :]
    grid[..., 1] = axis(h)[:, None]
    return grid


def apply_grid_change(grid_change, image, align_corners=False):
    """Warp `image` by a flow offset (n, 2, h, w) in normalized units (channel 0 = x).

    Bilinear with border padding, as in every THA warp.
    """
    grid = identity_grid(image, align_corners) + grid_change.permute(0, 2, 3, 1)
    return grid_sample_bands(image, grid, align_corners)


def grid_sample_bands(image, grid, align_corners=False):
    """F.grid_sample(bilinear, border) of one picture, its output rows split into bands, up to one
    per thread: PyTorch's CPU kernel shares out the batch, so a lone picture ran on one thread (a
    512x512 warp 3.3 ms on two threads, 1.6 ms in two bands). Each band samples the whole
    picture with its part of the grid: the same values, bit for bit."""
    if image.dtype != grid.dtype:  # a half picture, its grid in float32 (grid_dtype): sampled so
        return grid_sample_bands(image.to(grid.dtype), grid, align_corners).to(image.dtype)
    sample = functools.partial(F.grid_sample, mode="bilinear", padding_mode="border", align_corners=align_corners)
    # (Exported or compiled, before any shape is read: reading one adds nodes to a dynamic-batch graph.)
    if (torch.compiler.is_exporting() or torch.compiler.is_compiling() or image.shape[0] != 1
            or image.device.type != "cpu" or not SPEEDUPS["banded_warp"]):
        return sample(image, grid)
    c = image.shape[1]
    h, w = grid.shape[1:3]
    bands = next(count for count in range(torch.get_num_threads(), 0, -1) if h % count == 0)
    if bands < 2:
        return sample(image, grid)
    banded = sample(image.expand(bands, -1, -1, -1), grid.reshape(bands, h // bands, w, 2))
    return banded.transpose(0, 1).reshape(1, c, h, w)


def cat_channels(tensors):
    """torch.cat on the channel axis that keeps the first tensor's channels-last layout: cat
    alone falls back to NCHW when its inputs' layouts differ (a picture and pose planes), and
    the depthwise conv that follows runs three times slower on that."""
    first = tensors[0]
    if not _keeps_channels_last(first):
        return torch.cat(tensors, dim=1)
    n, _, h, w = first.shape
    out = torch.empty((n, sum(t.shape[1] for t in tensors), h, w), dtype=first.dtype, device=first.device,
                      memory_format=torch.channels_last)
    return torch.cat(tensors, dim=1, out=out)


def upsample_and_cat(x, skip):
    """cat([nearest x2 upsampling of x, skip]) on channels, as a U-Net decoder joins them. In
    channels-last, written straight into the joined tensor: the upsampled copy and its second
    pass through cat (the editor's largest) are never made. The same values, bit for bit."""
    if not _keeps_channels_last(x):
        return torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip], dim=1)
    n, c, h, w = x.shape
    out = torch.empty((n, c + skip.shape[1], 2 * h, 2 * w), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    s0, s1, s2, s3 = out.stride()
    # out[:, :c] seen as (n, c, h, 2, w, 2): each source pixel lands on its 2x2 block.
    blocks_2x2 = out.as_strided((n, c, h, 2, w, 2), (s0, s1, 2 * s2, s2, 2 * s3, s3))
    blocks_2x2.copy_(x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2))
    out[:, c:].copy_(skip)
    return out


def upsample_cat_conv_block(block, x, skip):
    """block(upsample_and_cat(x, skip)) for a U-Net decoder's conv block.

    Separable, in channels-last eager inference or an ONNX export, the joined tensor is never
    made: a depthwise conv acts on each channel alone, so the upsampled part and the skip are
    convolved apart, and the pointwise conv over the join is the sum of its two halves' convs
    (an output's sum split in two: 1e-6 relative). Eager, the upsampled part runs at the low size
    (`depthwise3_after_nearest_x2`); exported, as a resize and a depthwise conv (ONNX Runtime's
    depthwise ConvTranspose is slow: 11 ms for 128 channels at 96², torch's 1.5), and without the
    join ONNX Runtime neither concatenates nor reorders the joined tensor: the editor's three
    blocks alone 12 ms faster there, 2 threads. Elsewhere (NCHW, CUDA) the block as it is."""
    depthwise, pointwise, *rest = block
    eager = SPEEDUPS["join_free_decoder"] and _keeps_channels_last(x)
    if not ((eager or torch.compiler.is_exporting()) and _is_depthwise3(depthwise)
            and _is_pointwise(pointwise) and pointwise.bias is None):
        return block(upsample_and_cat(x, skip))
    c = x.shape[1]
    skipped = F.conv2d(skip, depthwise.weight[c:], None, 1, 1, 1, skip.shape[1])
    if eager:
        upsampled = depthwise3_after_nearest_x2(x, depthwise.weight[:c])
        y = packed_conv2d(upsampled, pointwise.weight[:, :c], pointwise, "upsampled half")
        y = packed_conv2d(skipped, pointwise.weight[:, c:], pointwise, "skip half", add_to=y)  # adds into the first
    else:
        upsampled = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), depthwise.weight[:c], None, 1, 1, 1, c)
        y = F.conv2d(upsampled, pointwise.weight[:, :c]) + F.conv2d(skipped, pointwise.weight[:, c:])
    for layer in rest:
        y = layer(y)
    return y


def _eager_cpu_inference(x):
    """Whether x is a float32 CPU tensor of eager inference (no gradients, no graph being made)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.compiler.is_exporting() and not torch.compiler.is_compiling())


def _keeps_channels_last(x):
    """Whether x is a channels-last 4-d tensor that eager inference code may write into
    preallocated outputs (out= and copies into views do not record gradients)."""
    return (x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.is_grad_enabled() and not torch.compiler.is_exporting()
            and not torch.compiler.is_compiling())


def paste(image, part, box):
    """A copy of `image` (repeated to part's batch) with `part` written into box (rows, cols:
    slices). Exported, as the image's bands around the part joined to it: the exporter's
    slice-scatter becomes a ScatterND between transposes, which ONNX Runtime takes 5 ms over for
    THA3's face in a 512x512 picture."""
    rows, cols = box
    image = image.expand(part.shape[0], -1, -1, -1)
    if torch.compiler.is_exporting():
        (top, bottom, _), (left, right, _) = rows.indices(image.shape[2]), cols.indices(image.shape[3])
        band = torch.cat([image[:, :, top:bottom, :left], part, image[:, :, top:bottom, right:]], dim=3)
        return torch.cat([image[:, :, :top], band, image[:, :, bottom:]], dim=2)
    result = image.clone()
    result[:, :, rows, cols] = part
    return result
