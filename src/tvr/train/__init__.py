"""tvr.train"""
