"""tvr.postproc"""
