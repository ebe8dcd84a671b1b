"""The ROS 2 adapter (``fusion_node``) and its ROS-free parts (``params``, ``qos``, ``launch_args``,
``processing``, ``stats``).

Importing this package imports no ROS; only ``sccosf_ros.node.fusion_node`` needs rclpy.
"""
