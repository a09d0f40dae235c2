"""ROS 2 deployment: message types, a Node API with rclpy and Cyclone DDS backends, the deploy nodes."""
