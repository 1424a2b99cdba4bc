"""interactvlm_ros — InteractVLM (Render–Localize–Lift) 3D contact estimation for robots.

Layout (the core imports nothing from ROS; only ``interactvlm_ros.ros`` does):

- ``bodies``      body models (Anny default, SMPL-H/SMPL-X via smplx), canonical "Vitruvian" template, part labels
- ``objects``     mesh loading/validation/normalisation, built-in labelled object library
- ``views``       the official human/object view sets and camera codes
- ``render``      multi-view renders + exact pixel→(vertex ids, barycentrics) maps (torch / nvdiffrast)
- ``assets``      ``ViewAssets`` (renders + lifting maps), content-hash disk cache, official data.zip loaders
- ``lift``        2D masks → per-vertex contact (official human / object aggregations), sparse operators
- ``models``      localizers: official-compatible MV-Loc (LLaVA+SAM) and the embedded default model
- ``runtime``     one inference interface over TensorRT / ONNX Runtime / PyTorch
- ``perception``  offline pretrained perception (mediapipe pose/segmentation, MiniLM text encoder)
- ``recon``       posed human + object pose in the camera frame
- ``pipeline``    ``ContactEstimator`` — the one object the CLI, node, benchmarks and evaluation use
- ``cli``         the ``interactvlm`` command
- ``ros``         the ROS 2 node, conversions, markers, replay tool
"""

__version__ = "0.1.0"
