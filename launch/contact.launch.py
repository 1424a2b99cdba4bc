"""Launch the interactvlm_contact node (and optionally RViz).

    ros2 launch interactvlm_ros contact.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info object_label:=cup [reconstruct:=true] [lifecycle:=true]
    # arguments: image camera_info depth object_mask object_detections (topic remaps), object_label model backend
    #            image_transport depth_transport reconstruct (parameters), params_file rviz rviz_fixed_frame lifecycle
    #            autostart

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
    "rviz_fixed_frame": ("camera_optical_frame", "with rviz:=true: RViz's fixed frame, your camera's optical frame "
                         "(e.g. camera_color_optical_frame of a RealSense)"),
    "lifecycle": ("false", "true: the managed node interactvlm-contact-lifecycle-node (configure loads the model, "
                  "activate starts processing) instead of the plain one"),
    "autostart": ("true", "with lifecycle:=true: this launch configures and then activates the node; false leaves it "
                  "unconfigured for a lifecycle manager (nav2's, or ros2 lifecycle set)"),
}
#: topic names of the node remapped by the arguments of the same name
REMAPS = ("image", "camera_info", "depth", "object_mask", "object_detections")
#: arguments that override the node parameter of the same name when not empty
PARAMETER_ARGUMENTS = ("object_label", "model", "backend", "image_transport", "depth_transport", "reconstruct")
BOOL_PARAMETERS = ("reconstruct",)
EXECUTABLES = {False: "interactvlm-contact-node", True: "interactvlm-contact-lifecycle-node"}
#: the topic of rviz/contact.rviz's "Camera" image display: RViz is remapped to the ``image`` argument, else that panel
#: stayed empty whenever the camera is not on /camera/image_raw (image:=/camera/color/image_raw, as documented)
RVIZ_CAMERA_TOPIC = "/camera/image_raw"


def _bool_argument(name: str, value) -> bool:
    value = str(value).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name}:={value}: use true or false (or leave it out)")
    return value == "true"


def node_kind(values: dict) -> tuple[str, bool, bool]:
    """(executable, managed, autostart) from the ``lifecycle`` and ``autostart`` arguments (true/false, anything else
    raises naming the argument; left out: the plain node)."""
    managed = _bool_argument("lifecycle", values.get("lifecycle", ARGUMENTS["lifecycle"][0]))
    autostart = _bool_argument("autostart", values.get("autostart", ARGUMENTS["autostart"][0]))
    return EXECUTABLES[managed], managed, managed and autostart


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
            out[name] = _bool_argument(name, value)
        else:
            out[name] = value
    return out


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
    from launch.conditions import IfCondition
    from launch.events import matches_action
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import LifecycleNode, Node
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from launch_ros.parameter_descriptions import ParameterValue
    from launch_ros.substitutions import FindPackageShare
    from lifecycle_msgs.msg import Transition

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
        executable, managed, autostart = node_kind(values)
        common = dict(package="interactvlm_ros", executable=executable, name="interactvlm_contact", output="screen",
                      emulate_tty=True, parameters=[values["params_file"], overrides],
                      remappings=[(name, values[name]) for name in REMAPS])
        if not managed:
            return [Node(**common)]
        node = LifecycleNode(namespace="", **common)

        def transition(tid):
            return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=tid))

        if not autostart:
            return [node]
        # configure now, activate once configuring has reached inactive (not after a later deactivate)
        activate = RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
            entities=[transition(Transition.TRANSITION_ACTIVATE)]))
        return [node, activate, transition(Transition.TRANSITION_CONFIGURE)]

    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "rviz", "contact.rviz"]),
                   "--fixed-frame", LaunchConfiguration("rviz_fixed_frame")],
        remappings=[(RVIZ_CAMERA_TOPIC, LaunchConfiguration("image"))],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*declared, OpaqueFunction(function=contact_node), rviz])
