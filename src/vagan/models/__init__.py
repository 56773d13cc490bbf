"""vagan.models"""
