"""skystate.runtime"""
