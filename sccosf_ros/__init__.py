"""sccosf_ros: SC-CoSF thermal/RGB fusion and segmentation.

The core (``model``, ``scan``, ``metrics``, ``imaging``, ``pairing``, ``pipeline``, ``engine``, ``backends``)
imports no ROS; ``sccosf_ros.node`` is the thin rclpy adapter over it. Errors a user can fix are
``sccosf_ros.errors.SccosfError``. Nothing here imports the generators (``sccosf_synth``) or the trainer.
"""

__version__ = "0.1.0"
