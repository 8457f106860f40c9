"""Devices' wrapping keys at the relay: rotation (service) and its routes."""
