"""PaintGuard's inference side: the noise U-Net and single-pass protection."""

from generator.protector import Protector

__all__ = ["Protector"]
