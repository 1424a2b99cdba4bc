"""Launch the interactvlm_contact node (and optionally RViz).

    ros2 launch interactvlm_ros contact.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info object_label:=cup
    # arguments: image camera_info depth object_mask image_transport depth_transport object_label model backend
    #            params_file rviz

Parameters come from ``params_file`` (default: the installed config/contact.yaml); the launch arguments
image_transport / depth_transport / object_label / model / backend override it. The imports are inside ``generate_launch_description`` so
that this file can be imported (and its arguments inspected) where ``launch``/``launch_ros`` are not
installed.
"""

ARGUMENTS = {
    "image": ("/camera/image_raw", "camera image topic (sensor_msgs/Image)"),
    "camera_info": ("/camera/camera_info", "camera info topic (sensor_msgs/CameraInfo)"),
    "depth": ("/camera/aligned_depth_to_color/image_raw",
              "depth image registered to the colour image (16UC1 mm or 32FC1 m; optional)"),
    "object_mask": ("/interactvlm/object_mask", "object mask from a segmentation node (mono8, nonzero = object, "
                    "the image's size and stamp; optional)"),
    "image_transport": ("raw", "raw | compressed (subscribe to <image>/compressed: image_transport's jpeg/png)"),
    "depth_transport": ("raw", "raw | compressedDepth (subscribe to <depth>/compressedDepth: png)"),
    "object_label": ("ball", "object the person interacts with"),
    "model": ("default", "'default' (embedded model) or a model path"),
    "backend": ("auto", "auto | tensorrt | onnxruntime | torch"),
    "params_file": ("", "parameter YAML (default: share/interactvlm_ros/config/contact.yaml)"),
    "rviz": ("false", "also start RViz with share/interactvlm_ros/rviz/contact.rviz"),
}


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue
    from launch_ros.substitutions import FindPackageShare

    share = FindPackageShare("interactvlm_ros")
    defaults = dict(ARGUMENTS)
    defaults["params_file"] = (PathJoinSubstitution([share, "config", "contact.yaml"]), ARGUMENTS["params_file"][1])
    declared = [DeclareLaunchArgument(name, default_value=default, description=desc)
                for name, (default, desc) in defaults.items()]
    cfg = {name: LaunchConfiguration(name) for name in ARGUMENTS}
    contact = Node(
        package="interactvlm_ros",
        executable="interactvlm-contact-node",
        name="interactvlm_contact",
        output="screen",
        emulate_tty=True,
        parameters=[cfg["params_file"],
                    # value_type=str: a label like "123" must stay a string parameter
                    {k: ParameterValue(cfg[k], value_type=str)
                     for k in ("image_transport", "depth_transport", "object_label", "model", "backend")}],
        remappings=[(name, cfg[name]) for name in ("image", "camera_info", "depth", "object_mask")],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "rviz", "contact.rviz"])],
        condition=IfCondition(cfg["rviz"]),
    )
    return LaunchDescription([*declared, contact, rviz])
