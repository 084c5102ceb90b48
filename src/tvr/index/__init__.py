"""tvr.index"""
