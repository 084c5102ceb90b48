"""tvr.cli"""
