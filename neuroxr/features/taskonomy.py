"""The Taskonomy encoders: one ResNet-50 architecture, 24 sets of task-trained weights.

The encoder follows the public PyTorch port of Taskonomy (``visualpriors``): a ResNet-50
whose stem pads by 3 then convolves without padding, whose max-pool uses ``ceil_mode``,
whose layers 1 and 2 downsample at the *last* block of the stage (with a stride-1
1x1 max-pool as the shortcut), whose layers 3 and 4 keep the resolution, and which ends
in a 3x3 convolution to 8 channels, batch norm, ReLU and a (parameter-free) group norm:
a 256 px image gives an (8, 16, 16) representation.  The state-dict keys are those of
the public ``<task>_encoder-<sha256>.pth`` checkpoints (``{"state_dict": ...}``), so they load as is.
Inputs are the published transform's, ``TF.to_tensor(TF.resize(image, 256)) * 2 - 1``: the
shorter side resized to 256 (aspect kept, no crop), values in [-1, 1] (mean 0.5, std 0.5 after
scaling to [0, 1]); the catalog rows say so with ``resize_size`` 256 and ``input_size`` 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: where the public checkpoints are published (visualpriors' TASKONOMY_PRETRAINED_WEIGHT_URL_TEMPLATE); the file
#: names carry their full sha256 (``<task>_encoder-<sha256>.pth``), listed in ``catalogs/taskonomy.csv``
CHECKPOINT_URL = "https://github.com/alexsax/visual-prior/raw/networks/assets/pytorch/{filename}"


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class TaskonomyEncoder(nn.Module):
    """ResNet-50 Taskonomy encoder: images (image, 3, 256, 256) in [-1, 1] -> (image, 8, 16, 16)."""

    def __init__(self, normalize_outputs: bool = True):
        super().__init__()
        self._inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        self.layer1 = self._stage(64, 3, stride=2)
        self.layer2 = self._stage(128, 4, stride=2)
        self.layer3 = self._stage(256, 6, stride=1)
        self.layer4 = self._stage(512, 3, stride=1)
        self.compress1 = nn.Conv2d(2048, 8, 3, stride=1, padding=1, bias=False)
        self.compress_bn = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=False)
        self.groupnorm = nn.GroupNorm(8, 8, affine=False)
        self.normalize_outputs = normalize_outputs
        # the same initialisation as torchvision's ResNet, so `random` is a sensible untrained net
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * _Bottleneck.expansion
        first_down = None
        if self._inplanes != out:
            first_down = nn.Sequential(nn.Conv2d(self._inplanes, out, 1, bias=False), nn.BatchNorm2d(out))
        layers = [_Bottleneck(self._inplanes, planes, 1, first_down)]
        self._inplanes = out
        layers += [_Bottleneck(out, planes) for _ in range(1, blocks - 1)]
        last_down = nn.Sequential(nn.MaxPool2d(1, stride=stride)) if stride != 1 else None
        layers.append(_Bottleneck(out, planes, stride, last_down))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.pad(x, (3, 3, 3, 3))
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.relu1(self.compress_bn(self.compress1(x)))
        return self.groupnorm(x) if self.normalize_outputs else x


def build_taskonomy_encoder() -> TaskonomyEncoder:
    """A Taskonomy encoder with its own (torchvision-style) random initialisation."""
    return TaskonomyEncoder()


def unwrap_taskonomy_checkpoint(obj):
    """The state dict inside a public Taskonomy checkpoint (``{"state_dict": ...}``)."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj["state_dict"]
    return obj


def taskonomy_checkpoint_url(task: str) -> str:
    """The published URL of ``task``'s encoder checkpoint (its name, with the sha256, from ``catalogs/taskonomy.csv``)."""
    from ..catalogs import read_catalog

    tk = read_catalog("taskonomy.csv")
    hit = tk[tk["task"] == task]
    if not len(hit) or not isinstance(hit["encoder_file"].iloc[0], str):
        raise KeyError(f"no published Taskonomy encoder for task {task!r}")
    return CHECKPOINT_URL.format(filename=hit["encoder_file"].iloc[0])


__all__ = ["TaskonomyEncoder", "build_taskonomy_encoder", "taskonomy_checkpoint_url"]

if __name__ == "__main__":  # pragma: no cover - quick shape check
    print(TaskonomyEncoder()(torch.zeros(1, 3, 256, 256)).shape)
