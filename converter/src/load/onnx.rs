//! ONNX reader (tract-onnx): maps an ALBERT ONNX export back to Hugging Face tensor names.
