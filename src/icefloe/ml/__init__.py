"""Machine learning: training specs, Spark ML pipelines, evaluation, ONNX, training runs."""
