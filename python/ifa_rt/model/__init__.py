"""IFA reference model, faithful to model.md §1: presets, builders and the modules they assemble."""

from .builders import (
    build_model,
    ifa_camvid_lite0,
    ifa_camvid_r18,
    ifa_r18,
    ifa_r50,
    ifa_r50_aspp,
    ifa_r101,
)
from .config import IFAConfig, get_preset, mlp_in_channels, presets
from .head import IFAHead, SpatialEncoding, make_coord, nearest_source_index, source_geometry
from .neck import ASPP, LateralNeck
from .resnet import ResNetEncoder, resnet_encoder
from .segmentor import AuxHead, IFADecoder, IFASegmentor, build_encoder

__all__ = [
    "ASPP",
    "AuxHead",
    "IFAConfig",
    "IFADecoder",
    "IFAHead",
    "IFASegmentor",
    "LateralNeck",
    "ResNetEncoder",
    "SpatialEncoding",
    "build_encoder",
    "build_model",
    "get_preset",
    "ifa_camvid_lite0",
    "ifa_camvid_r18",
    "ifa_r18",
    "ifa_r50",
    "ifa_r50_aspp",
    "ifa_r101",
    "make_coord",
    "mlp_in_channels",
    "nearest_source_index",
    "presets",
    "resnet_encoder",
    "source_geometry",
]
