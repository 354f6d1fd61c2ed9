"""Augmentation for fine-tuning, suited to smear images: the cell has no up, no left, and the
stain and lamp vary a little from slide to slide. Works on 0-255 float images inside tf.data."""

from __future__ import annotations


def augment(image, label, seed_stream=None):
    """Random flips, 90° rotations and mild brightness/contrast/saturation/hue jitter."""
    import tensorflow as tf

    x = tf.cast(image, tf.float32) / 255.0
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_flip_up_down(x)
    x = tf.image.rot90(x, tf.random.uniform([], 0, 4, dtype=tf.int32))
    x = tf.image.random_brightness(x, 0.08)
    x = tf.image.random_contrast(x, 0.85, 1.15)
    x = tf.image.random_saturation(x, 0.85, 1.15)
    x = tf.image.random_hue(x, 0.03)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0, label
