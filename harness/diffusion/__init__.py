"""harness.diffusion"""
