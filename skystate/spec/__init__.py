"""skystate.spec"""
