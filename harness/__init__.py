"""Benchmark harness for momentum diffusion (FDM, arXiv 2306.06991) against VP, VE and EDM."""

__version__ = "0.1.0"
