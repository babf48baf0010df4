"""harness.tune"""
