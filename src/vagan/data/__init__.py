"""vagan.data"""
