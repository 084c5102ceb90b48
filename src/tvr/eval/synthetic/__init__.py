"""tvr.eval.synthetic"""
