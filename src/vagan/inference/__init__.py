"""vagan.inference"""
