"""What a person types: ``cli`` parses and hands each command to its module; the
commands use the wiring (``responder.service``), never the other way round.
"""
