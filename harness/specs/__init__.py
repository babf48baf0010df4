"""harness.specs"""
