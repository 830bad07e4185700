"""CIFAR ResNets (He et al. 2016, Sec. 4.2) with an injected norm layer.

Depth 6n+2: a 3x3 conv, three stages of n basic blocks at 16/32/64 channels (times
`width`), global average pooling and a linear classifier. Shortcuts are option A:
parameter-free (stride-2 subsampling and zero-padded channels), as in the paper's
CIFAR experiments, so ResNet-20 has 0.27M parameters.

Every block has the same named positions whatever the norm (`norm1`, `norm2` are
nn.Identity under norm=none), so probes hook the same modules with and without BN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, NormConfig
from .mlp import build_mlp
from .norms import NormLayer, make_norm_layer


class ShortcutA(nn.Module):
    """Option A: subsample by `stride`, zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C_in, H/s, W/s)
        # split the new channels evenly before and after, as in the reference implementations
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """conv-norm-relu-(dropout)-conv-norm, plus the shortcut, then relu.

    `plain` drops the shortcut (He et al. 2016's plain nets); `skipinit` multiplies the
    residual branch by a learnable scalar that starts at 0 (De & Smith 2020), which lets
    unnormalized deep ResNets train: the fair control for "BN makes init easy"."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer, bias: bool,
                 plain: bool = False, skipinit: bool = False, dropout: float = 0.0):
        super().__init__()
        self.plain = plain
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.norm1 = norm_layer(out_channels)
        self.relu1 = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.skip_gain = nn.Parameter(torch.zeros(())) if skipinit else None
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.norm2 = norm_layer(out_channels)
        self.relu2 = nn.ReLU(inplace=False)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ShortcutA(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu1(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        if self.skip_gain is not None:
            out = self.skip_gain * out
        if self.plain:
            return self.relu2(out)
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, width: int = 1, num_classes: int = 10,
                 norm_layer: NormLayer = nn.BatchNorm2d, bias: bool = False,
                 plain: bool = False, skipinit: bool = False, dropout: float = 0.0):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        channels = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, channels[0], 3, 1, 1, bias=bias)
        self.norm1 = norm_layer(channels[0])
        self.relu1 = nn.ReLU(inplace=False)
        stages = []
        in_c = channels[0]
        for i, c in enumerate(channels):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_c, c, stride, norm_layer, bias, plain, skipinit, dropout))
                in_c = c
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(channels[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 32, 32)
        x = self.relu1(self.norm1(self.conv1(x)))  # (N, 16w, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))  # (N, 64w, 8, 8)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 64w)
        return self.fc(x)

    def blocks(self) -> list[BasicBlock]:
        return [m for m in self.modules() if isinstance(m, BasicBlock)]


def build_model(model: ModelConfig, norm: NormConfig) -> nn.Module:
    if model.name == "mlp":  # the 1-d net of Ioffe & Szegedy's Fig. 1
        return build_mlp(model, norm)
    norm_layer, bias = make_norm_layer(norm)
    if model.name == "resnet":
        return CifarResNet(model.depth, model.width, model.num_classes, norm_layer, bias,
                           model.plain, model.skipinit, model.dropout)
    raise KeyError(f"model.name={model.name!r}: one of resnet, mlp")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
