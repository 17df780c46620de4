"""Evaluation of generated video against real video: metrics and the self-reenactment protocol."""
