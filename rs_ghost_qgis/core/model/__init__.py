"""The model: its card, its ONNX metadata, the onnxruntime session that runs it, and an adapted model's head."""
