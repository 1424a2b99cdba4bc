"""Model export: ONNX graphs + manifest (``onnx_export``, ``mvloc_export``) and TensorRT engines with a
key-checked on-disk cache (``tensorrt_build``). Heavy imports (torch, onnx, tensorrt) happen inside functions."""
