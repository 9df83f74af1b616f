"""skystate.reconcile"""
