"""Photos, crops, masks and splits, and the Lightning data module over them.

Imports nothing else from ``trainer``.
"""
