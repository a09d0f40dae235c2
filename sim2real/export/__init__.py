"""Layer 5: the ONNX writer, the one producer of ``policy.onnx`` files."""
