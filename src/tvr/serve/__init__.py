"""tvr.serve"""
