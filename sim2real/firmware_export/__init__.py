"""Deployment artifacts of trained policies: ``policy.onnx`` with its metadata contract (:mod:`.onnx_export`)."""
