"""What trains: the generator's and the inpainter's LightningModules, teacher caches, LightningCLI and W&B plumbing.

Builds on every layer but ``commands``.
"""
