"""ckptd: scheduled CRIU checkpoints of Docker containers."""

__version__ = "0.1.0"
