"""The ROS 2 adapter: the lifecycle node (``fusion_node``) and the ROS-free parts only it uses: its parameter
table (``params``, read by the launch file without rclpy), QoS choices (``qos``), launch arguments
(``launch_args``) and diagnostics statistics (``stats``). The per-pair work is :mod:`sccosf_ros.pipeline`,
shared with the offline evaluator.

Importing this package imports no ROS; only ``sccosf_ros.node.fusion_node`` needs rclpy.
"""
