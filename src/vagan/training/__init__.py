"""vagan.training"""
