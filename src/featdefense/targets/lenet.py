"""The paper's target: a 4-layer LeNet on 28x28x1 images in [0, 1] (the default target.architecture).

Written for the gradient with respect to the input, which every attack step takes (benchmarks/pgd.py,
docs/performance.md); the function, and its gradients, are the paper's network's:
- weights in channels-last memory format: oneDNN's convolutions run about 1.5x faster on a CPU;
- the first convolution's input gradient by a matrix product and col2im (`fold`): oneDNN's own, for a
  one-channel input, was the costliest operation of an attack step;
- ReLU after the max-pooling, not before: the two commute exactly (ReLU is monotonic), and ReLU and its
  gradient then touch a quarter of the values.
The state dict is the plain network's (same keys, same shapes): model files load either way.
"""
import torch
import torch.nn.functional as F
from torch import nn

from . import Target


class _OneChannelConv(torch.autograd.Function):
    """conv2d (stride 1, no padding) of one-channel images; the input gradient as W^T g, then col2im."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        channels, _, k, _ = weight.shape
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            columns = torch.matmul(weight.reshape(channels, k * k).t(), grad.flatten(2))  # N x k*k x positions
            grad_x = F.fold(columns, x.shape[-2:], k)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad, x, weight, [channels], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                [False, ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        return grad_x, grad_weight, grad_bias


class OneChannelConv2d(nn.Conv2d):
    """nn.Conv2d(1, out, k) whose input gradient is computed as _OneChannelConv does."""

    def __init__(self, out_channels: int, kernel_size: int):
        super().__init__(1, out_channels, kernel_size)

    def forward(self, x):
        return _OneChannelConv.apply(x, self.weight, self.bias)


class LeNet(nn.Sequential):
    def __init__(self, num_classes: int = 10):
        super().__init__(
            OneChannelConv2d(20, 5), nn.MaxPool2d(2, 2), nn.ReLU(),  # 20 x 12 x 12
            nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2), nn.ReLU(),     # 50 x 4 x 4
            nn.Flatten(),                                            # 800
            nn.Linear(800, 500), nn.ReLU(),
            nn.Linear(500, num_classes),
        )
        self.to(memory_format=torch.channels_last)


TARGET = Target(name="lenet", label="LeNet", input_shape=(1, 28, 28), classes=10, build=lambda classes: LeNet(classes),
                order=0, description="the paper's LeNet: two 5x5 convolutions (20, 50) with max-pooling, 500 hidden")
