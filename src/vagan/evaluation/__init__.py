"""vagan.evaluation"""
