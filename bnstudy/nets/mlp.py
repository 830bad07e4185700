"""The fully connected net of Ioffe & Szegedy (2015, Sec. 4.1, Fig. 1), on flattened CIFAR-10.

3 hidden layers of 100 sigmoid units (model.depth, model.width), weights from a small
Gaussian (std MLP_INIT_STD), a 1-d norm layer between each linear map and its sigmoid:
with norm=bn the norm's input is the pre-BN activation and its output is the sigmoid's
input, the quantity in the paper's Fig. 1(b, c). The layers are named like the ResNet's
positions (`layer1.norm` in, `layer1` out), so the same probes read both nets.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig, NormConfig
from .norms import NormLayer, make_norm_layer

MLP_INIT_STD = 0.01  # "small random Gaussian values" (Ioffe & Szegedy 2015, Sec. 4.1)


class HiddenLayer(nn.Module):
    def __init__(self, in_features: int, out_features: int, norm_layer, bias: bool):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=bias)
        self.norm = norm_layer(out_features)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in) -> (N, out)
        return self.act(self.norm(self.fc(x)))


class SigmoidMLP(nn.Module):
    def __init__(self, in_features: int = 3 * 32 * 32, hidden: int = 100, depth: int = 3,
                 num_classes: int = 10, norm_layer: NormLayer = nn.BatchNorm1d, bias: bool = False):
        super().__init__()
        sizes = [in_features] + [hidden] * depth
        for i in range(depth):
            self.add_module(f"layer{i + 1}", HiddenLayer(sizes[i], sizes[i + 1], norm_layer, bias))
        self.fc = nn.Linear(hidden, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, MLP_INIT_STD)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 32, 32)
        x = torch.flatten(x, 1)  # (N, 3072)
        for block in self.blocks():
            x = block(x)  # (N, hidden)
        return self.fc(x)  # (N, num_classes)

    def blocks(self) -> list[HiddenLayer]:
        return [m for m in self.children() if isinstance(m, HiddenLayer)]


def build_mlp(model: ModelConfig, norm: NormConfig) -> SigmoidMLP:
    norm_layer, bias = make_norm_layer(norm, features=True)
    return SigmoidMLP(3 * 32 * 32, model.width, model.depth, model.num_classes, norm_layer, bias)
