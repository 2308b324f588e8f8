"""The frozen target that protection attacks: LaMa's FFC-ResNet, its exact inference and checkpoint loaders.

Imports nothing else from ``trainer``: every other layer builds on it.
"""
