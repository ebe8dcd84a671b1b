"""sccosf_ros: SC-CoSF thermal/RGB fusion and segmentation.

The core (``model``, ``scan``, ``metrics``, ``imaging``, ``pairing``, ``engine``) imports no ROS;
``sccosf_ros.node`` is the thin rclpy adapter over it.
"""

__version__ = "0.1.0"
