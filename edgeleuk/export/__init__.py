"""Host side: conversion of a Keras model into checked TFLite and ONNX variants."""
