"""tvr.eval.datasets"""
