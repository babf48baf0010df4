"""harness.evaluate"""
