"""ROS 2 adapter of interactvlm_ros (the only part of the package that imports ROS).

- ``conversions`` — sensor_msgs Image / CameraInfo / PointCloud2 <-> numpy, with input validation.
- ``markers``     — MarkerArray (meshes coloured by contact) from a ``ContactResult``.
- ``diagnostics`` — thread-safe counters and the ``/diagnostics`` message.
- ``node``        — the ``interactvlm_contact`` node (console script ``interactvlm-contact-node``).
- ``replay``      — ``interactvlm-replay``: video / image folder / image -> Image + CameraInfo.
- ``demo``        — ``python -m interactvlm_ros.ros.demo``: node + replay + a printing listener.

Modules are imported explicitly (nothing is imported here) so that ``import interactvlm_ros.ros``
never pulls rclpy by accident.
"""
