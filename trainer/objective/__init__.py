"""The protection objective, written once: losses and masks E(m)/E'(m), the 20-step optimiser, metrics, EOT.

Both protection methods call it: the optimiser directly, the generator's training
through ``trainer.training``. Imports nothing else from ``trainer``: an inpainter is any module.
"""
