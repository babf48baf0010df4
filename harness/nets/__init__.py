"""harness.nets"""
