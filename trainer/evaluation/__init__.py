"""Scoring protection methods side by side, attackability probes, and the compare configs and reports.

Shared by ``paintguard compare``, ``demo`` and ``evaluate-inpainter`` and by training's
validation. Builds on ``inpainting``, ``objective`` and ``data``; never imports ``training``.
"""
