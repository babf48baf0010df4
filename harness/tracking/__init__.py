"""harness.tracking"""
