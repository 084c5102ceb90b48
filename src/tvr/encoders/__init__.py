"""tvr.encoders"""
