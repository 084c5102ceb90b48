"""tvr.eval"""
