"""tvr.models"""
