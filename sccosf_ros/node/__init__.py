"""The ROS 2 adapter (``fusion_node``) and its ROS-free parts (``params``, ``processing``, ``stats``).

Importing this package imports no ROS; only ``sccosf_ros.node.fusion_node`` needs rclpy.
"""
