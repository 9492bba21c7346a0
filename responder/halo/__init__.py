"""Halo: the API client (``client``), its tickets as values (``tickets``, pure) and the
stand-in Halo the demo and the tests talk to over real HTTP (``standin``).
"""
