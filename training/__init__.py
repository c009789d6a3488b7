"""Training side of rs_ghost_qgis: models, losses, data, distillation runs and ONNX export."""
