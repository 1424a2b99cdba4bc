"""Launch the interactvlm_contact node (and optionally RViz).

    ros2 launch interactvlm_ros contact.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info object_label:=cup [reconstruct:=true]
    # arguments: image camera_info depth object_mask object_detections (topic remaps), object_label model backend
    #            image_transport depth_transport reconstruct (parameters), params_file rviz

Parameters come from ``params_file`` (default: the installed config/contact.yaml). A parameter argument given on the
command line overrides the file's value; one left empty (the default) keeps it — so a params file of your own is not
silently overridden by launch defaults. The imports are inside ``generate_launch_description`` so that this file can
be imported (its arguments inspected, ``parameter_overrides`` tested) where ``launch``/``launch_ros`` are not
installed.
"""

ARGUMENTS = {
    "image": ("/camera/image_raw", "camera image topic (sensor_msgs/Image)"),
    "camera_info": ("/camera/camera_info", "camera info topic (sensor_msgs/CameraInfo)"),
    "depth": ("/camera/aligned_depth_to_color/image_raw",
              "depth image registered to the colour image (16UC1 mm or 32FC1 m; optional)"),
    "object_mask": ("/interactvlm/object_mask", "object mask from a segmentation node (mono8, nonzero = object, "
                    "the image's size and stamp; optional)"),
    "object_detections": ("/interactvlm/object_detections", "a detector's boxes (vision_msgs/Detection2DArray, the "
                          "image's stamp; optional: the object's box when there is no mask)"),
    "object_label": ("", "object the person interacts with ('' = the params file's; config/contact.yaml: ball)"),
    "model": ("", "'default' (embedded model) or a model path ('' = the params file's)"),
    "backend": ("", "auto | tensorrt | onnxruntime | torch ('' = the params file's)"),
    "image_transport": ("", "raw | compressed: subscribe to <image>/compressed, image_transport's jpeg/png "
                        "('' = the params file's)"),
    "depth_transport": ("", "raw | compressedDepth: subscribe to <depth>/compressedDepth, png ('' = the params file's)"),
    "reconstruct": ("", "true | false: fit human + object meshes in the camera frame (object pose, grip poses, free "
                    "grasp regions, /tf) ('' = the params file's; config/contact.yaml: false)"),
    "params_file": ("", "parameter YAML (default: share/interactvlm_ros/config/contact.yaml)"),
    "rviz": ("false", "also start RViz with share/interactvlm_ros/rviz/contact.rviz"),
}
#: topic names of the node remapped by the arguments of the same name
REMAPS = ("image", "camera_info", "depth", "object_mask", "object_detections")
#: arguments that override the node parameter of the same name when not empty
PARAMETER_ARGUMENTS = ("object_label", "model", "backend", "image_transport", "depth_transport", "reconstruct")
BOOL_PARAMETERS = ("reconstruct",)


def parameter_overrides(values: dict) -> dict:
    """{parameter: value} of the parameter arguments given (non-empty) in ``values`` (argument -> launch-time string).
    Booleans are parsed from true/false (anything else raises, naming the argument); the others stay strings (a label
    "123" must not become an integer parameter)."""
    out = {}
    for name in PARAMETER_ARGUMENTS:
        value = str(values.get(name, "")).strip()
        if not value:
            continue
        if name in BOOL_PARAMETERS:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"launch argument {name}:={value}: use true or false (or leave it out)")
            out[name] = value.lower() == "true"
        else:
            out[name] = value
    return out


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
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

    def contact_node(context, *args, **kwargs):
        # at launch time: only the parameter arguments given go over the params file
        values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
        overrides = {k: v if isinstance(v, bool) else ParameterValue(v, value_type=str)  # str: no YAML re-typing
                     for k, v in parameter_overrides(values).items()}
        return [Node(
            package="interactvlm_ros",
            executable="interactvlm-contact-node",
            name="interactvlm_contact",
            output="screen",
            emulate_tty=True,
            parameters=[values["params_file"], overrides],
            remappings=[(name, values[name]) for name in REMAPS],
        )]

    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "rviz", "contact.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*declared, OpaqueFunction(function=contact_node), rviz])
