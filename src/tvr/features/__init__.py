"""tvr.features"""
