"""harness.train"""
