"""dynsweep: dynamic convolution (DyNet, CondConv, DY-CNN) as a research instrument."""

__version__ = "0.1.0"
