"""A short tour of shiftpool's downsamplers: output shapes and a shift-invariance check.

For every registered operator this prints

1. the output shape for a ``1 x 3 x 7 x 9`` input at stride 2 (the size contract:
   ``ceil(H / 2) x ceil(W / 2)`` for any H, W), and
2. how a tiny random network (circular 3x3 conv -> op -> circular 3x3 conv -> op -> global
   average pool -> linear) reacts to circular shifts of its input by 1, 2 and 3 pixels along
   both axes: the largest change of any logit, and the share of images whose prediction stays.

All networks share their conv and linear weights; only the downsampler differs. Everything is
seeded, and the networks are in eval mode, so the output is the same on every run. ``aps`` and
``lps`` choose polyphase components by a shift-invariant rule and so are exactly invariant to
circular shifts (up to float rounding); fixed-phase operators are not.

Run it with ``make demo`` or ``python examples/operators_demo.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from shiftpool import create_downsample, list_downsamples

SHIFTS = (1, 2, 3)
WIDTH = 16
CLASSES = 10
IMAGES = 256
SIZE = 16


class TinyNet(nn.Module):
    """Circular conv -> downsample -> circular conv -> downsample -> GAP -> linear."""

    def __init__(self, op: str, in_channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)  # identical convs and head for every operator
        self.conv1 = nn.Conv2d(in_channels, WIDTH, 3, padding=1, padding_mode="circular")
        self.conv2 = nn.Conv2d(WIDTH, WIDTH, 3, padding=1, padding_mode="circular")
        self.head = nn.Linear(WIDTH, CLASSES)
        torch.manual_seed(1)
        self.down1 = create_downsample(op, channels=WIDTH, stride=2)
        self.down2 = create_downsample(op, channels=WIDTH, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down1(torch.relu(self.conv1(x)))
        x = self.down2(torch.relu(self.conv2(x)))
        return self.head(x.mean(dim=(2, 3)))


def shift_report(op: str, images: torch.Tensor) -> list[tuple[float, float]]:
    """For each shift: (max |logit change|, share of unchanged predictions)."""
    net = TinyNet(op, images.shape[1]).eval()
    with torch.no_grad():
        logits = net(images)
        rows = []
        for shift in SHIFTS:
            shifted = net(torch.roll(images, shifts=(shift, shift), dims=(2, 3)))
            change = (shifted - logits).abs().max().item()
            same = (shifted.argmax(1) == logits.argmax(1)).float().mean().item()
            rows.append((change, same))
    return rows


def main() -> None:
    ops = list_downsamples()
    probe = torch.randn(1, 3, 7, 9)
    print("Output shape for a 1x3x7x9 input, stride 2:")
    for op in ops:
        torch.manual_seed(0)
        shape = tuple(create_downsample(op, channels=3, stride=2).eval()(probe).shape)
        print(f"  {op:<10} {shape}")

    images = torch.randn(IMAGES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    print(f"\nCircular shift by (d, d) pixels, {IMAGES} random {SIZE}x{SIZE} images, eval mode:")
    header = "".join(f"   d={d}: max|dlogit|    same" for d in SHIFTS)
    print(f"  {'op':<10}{header}")
    for op in ops:
        cells = "".join(
            f"   {change:16.2e}  {same:6.1%}" for change, same in shift_report(op, images)
        )
        print(f"  {op:<10}{cells}")


if __name__ == "__main__":
    main()
