"""The core package must not import ROS."""
from __future__ import annotations

import subprocess
import sys


def test_core_imports_without_rclpy():
    code = (
        "import sys\n"
        "import interactvlm_ros.views, interactvlm_ros.lift, interactvlm_ros.assets, interactvlm_ros.render\n"
        "import interactvlm_ros.bodies, interactvlm_ros.cli.render\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'rclpy_message_converter')"
        " or m.startswith('interactvlm_ros.ros'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
