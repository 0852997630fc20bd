"""A small convolutional classifier that trains in seconds on a CPU at 64 x 64 input.

Its head is global average pooling followed by one ``nn.Linear``, so the class
activation map (CAM) of the ``features`` block is exact:

    logit_c = b_c + sum_k w_{c,k} * mean_{i,j} A_k(i, j) = b_c + mean_{i,j} CAM_c(i, j)
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SmallCNN"]


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3x3 convolution (no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Five conv-BN-ReLU layers, global average pooling and a linear classifier.

    The three stem layers have stride 2, so the resolution is divided by 8 (64 px -> 8 x 8
    maps in ``features``, two stride-1 layers) and no layer runs at full resolution; channel
    widths are ``width, 2*width, 4*width, 4*width``.

    Args:
        num_classes: number of output logits.
        width: number of channels of the first stage.
    """

    def __init__(self, num_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError(f"num_classes and width must be positive, got {num_classes}, {width}")
        self.stem = nn.Sequential(
            _conv_bn_relu(3, width, stride=2),
            _conv_bn_relu(width, 2 * width, stride=2),
            _conv_bn_relu(2 * width, 4 * width, stride=2),
        )
        # Last spatial block: its output is the CAM layer.
        self.features = nn.Sequential(
            _conv_bn_relu(4 * width, 4 * width, stride=1),
            _conv_bn_relu(4 * width, 4 * width, stride=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of a normalised image batch ``[B, 3, H, W]``."""
        feats = self.features(self.stem(x))
        return self.classifier(self.pool(feats).flatten(1))
