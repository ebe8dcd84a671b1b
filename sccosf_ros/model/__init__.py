"""SC-CoSF network: shared MobileNetV2 encoder, Sc-CFM fusion, ICRM segmentation and ReAW fusion decoders.

See ``docs/architecture.md`` for the diagrams, shapes and the design choices the paper leaves open.
"""

from sccosf_ros.model.color import rgb_to_ycbcr_planes, ycbcr_planes_to_rgb
from sccosf_ros.model.config import PRESETS, ModelConfig
from sccosf_ros.model.encoder import IMAGENET_SHA256, default_imagenet_weights_path, load_imagenet_encoder
from sccosf_ros.model.sccosf import SCCoSF, build_model, build_model_from_config, fold_batchnorm_

__all__ = [
    "IMAGENET_SHA256",
    "PRESETS",
    "ModelConfig",
    "SCCoSF",
    "build_model",
    "build_model_from_config",
    "default_imagenet_weights_path",
    "fold_batchnorm_",
    "load_imagenet_encoder",
    "rgb_to_ycbcr_planes",
    "ycbcr_planes_to_rgb",
]
