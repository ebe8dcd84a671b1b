"""Build script for sccosf_ros (ament_python), its generators sccosf_synth and its trainer sccosf_train.

Works both under ``colcon build`` in a ROS 2 workspace and with ``pip install -e .`` in a venv.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sccosf_ros"


def _files(pattern: str) -> list[str]:
    return [p for p in glob(pattern) if not p.endswith(".gitkeep")]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(
        include=[
            "sccosf_ros",
            "sccosf_ros.*",
            "sccosf_synth",
            "sccosf_synth.*",
            "sccosf_train",
            "sccosf_train.*",
        ]
    ),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _files("launch/*.py")),
        (f"share/{PACKAGE}/config", _files("config/*.yaml") + _files("config/*.xml")),
        (f"share/{PACKAGE}/models", _files("models/*.safetensors") + _files("models/*.md")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "safetensors",
        "pyyaml",
        "tqdm",
        "rosbags",
        "torch>=2.2",
    ],
    extras_require={
        # The ONNX Runtime backend and `sccosf-export` (never needed by the default torch path). Running an
        # exported .onnx file needs only onnxruntime (or onnxruntime-gpu for CUDA/TensorRT).
        "onnx": ["onnxruntime>=1.17", "onnx>=1.16", "onnxscript>=0.2"],
        # The same on an NVIDIA GPU: onnxruntime-gpu brings the CUDA and TensorRT execution providers (and
        # the CPU one); install it instead of "onnx", not beside it (both provide the onnxruntime module).
        "onnxruntime-gpu": ["onnxruntime-gpu>=1.17", "onnx>=1.16", "onnxscript>=0.2"],
    },
    zip_safe=True,
    maintainer="sccosf_ros maintainers",
    maintainer_email="maintainers@sccosf.invalid",
    description="SC-CoSF thermal/RGB fusion and semantic segmentation node for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sccosf-fuse = sccosf_ros.cli.fuse:main",
            "sccosf-export = sccosf_ros.cli.export:main",
            "sccosf-model-info = sccosf_ros.cli.model_info:main",
            "fusion_node = sccosf_ros.node.fusion_node:main",
            "sccosf-bag = sccosf_ros.cli.bag:main",
            "sccosf-eval = sccosf_ros.cli.evaluate:main",
            "sccosf-replay = sccosf_ros.cli.replay:main",
            "sccosf-register = sccosf_ros.cli.register:main",
            "sccosf-train = sccosf_train.cli:main",
            "sccosf-adapt = sccosf_train.adapt:main",
            "sccosf-demo = sccosf_synth.demo:main",
            "sccosf-demo-bag = sccosf_synth.demo_bag:main",
        ],
    },
)
