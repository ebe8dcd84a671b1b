"""Every topic name the package uses, in one place (no ROS imports, so the bag tools can read it).

The node's names are *relative* so that a namespace or a remapping moves them (yolo_ros and image_pipeline
do the same): inputs are bound by remapping ``rgb/image`` and ``thermal/image``. A node started in the root
namespace publishes the outputs under the absolute names below, which the bag tools, the replay and the docs
use. The camera topics are only the demo bag's defaults; any bag names its own.
"""

from __future__ import annotations

# --- the node ----------------------------------------------------------------------------------------------
INPUTS = {"rgb": "rgb/image", "thermal": "thermal/image"}
"""Input stream name -> the node's relative subscription topic (bind with ``-r rgb/image:=/camera/...``)."""
OUTPUTS = {
    "fused": "sccosf/fused",
    "segmentation": "sccosf/segmentation",
    "segmentation_color": "sccosf/segmentation_color",
    "overlay": "sccosf/overlay",
}
"""Output name -> the node's relative publication topic."""
RGB_CAMERA_INFO = "rgb/camera_info"
"""Optional input: the RGB camera's ``sensor_msgs/CameraInfo`` (image_transport names it beside the image)."""
CAMERA_INFO = "sccosf/camera_info"
"""``sensor_msgs/CameraInfo`` published with every output: the RGB camera's model on the outputs' pixel grid,
with the outputs' header."""
CLASS_NAMES = "sccosf/class_names"
"""Latched ``std_msgs/String`` JSON ``{class_names, palette}``."""
DIAGNOSTICS = "/diagnostics"


def absolute(topic: str) -> str:
    """The topic as seen from the root namespace (where the launch file and the tools start the node)."""
    return topic if topic.startswith("/") else "/" + topic


# --- what a node in the root namespace publishes, as bags and tools name it -------------------------------
FUSED = absolute(OUTPUTS["fused"])
SEGMENTATION = absolute(OUTPUTS["segmentation"])
SEGMENTATION_COLOR = absolute(OUTPUTS["segmentation_color"])
OVERLAY = absolute(OUTPUTS["overlay"])

# --- the demo bag's inputs and labels (defaults of sccosf-bag, sccosf-eval, sccosf-replay) ----------------
CAMERA_RGB = "/camera/rgb/image_raw"
CAMERA_THERMAL = "/camera/thermal/image_raw"
LABELS = "/sccosf/labels"
"""mono8 class ids with exactly the RGB frame's stamp (how the evaluator matches them)."""
