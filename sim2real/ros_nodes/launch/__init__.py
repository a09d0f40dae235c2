"""``sim2real launch``: ROS 2 XML launch files run without ROS (parser, substitutions, package lookup, processes)."""
