"""vagan.physics"""
