"""Patch encoders (a registry of named architectures loaded from local weights) and, later, the slide models."""
