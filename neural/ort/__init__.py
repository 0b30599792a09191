"""Inference without PyTorch: the THA networks as ONNX graphs run by ONNX Runtime.

Nothing here imports torch (tests/test_layers.py checks it): a stock Blender has no torch, and
this package is what poses sprites there. The graphs are exported from neural/'s own torch
modules by neural/onnx_export.py.
"""
