"""Efficient architectures and the counters that measure them."""

from effdl.models.counting import count_flops, count_params
from effdl.models.mobilenet import InvertedResidual, MobileNetV1, MobileNetV2, depthwise_separable
from effdl.models.resnet import BasicBlock, ResNetTeacher, SmallResNet

__all__ = [
    "BasicBlock",
    "InvertedResidual",
    "MobileNetV1",
    "MobileNetV2",
    "ResNetTeacher",
    "SmallResNet",
    "count_flops",
    "count_params",
    "depthwise_separable",
]
