"""Host side: training the study's MobileNetV2 classifier (imports TensorFlow/Keras)."""
