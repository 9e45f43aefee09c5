"""MTCNN face detection (Zhang et al., IEEE SPL 2016) on ONNX Runtime and numpy, without torch.

See :class:`fer_core.mtcnn.pipeline.OnnxMTCNN`; the ONNX files are facenet-pytorch's networks (NOTICE.md).
"""
