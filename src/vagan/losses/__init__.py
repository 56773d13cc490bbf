"""vagan.losses"""
