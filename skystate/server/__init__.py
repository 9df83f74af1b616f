"""skystate.server"""
