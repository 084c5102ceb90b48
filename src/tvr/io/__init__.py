"""tvr.io"""
