"""Answers: composing each answer from the templates (``compose``, pure), bundling
digests (``digest``, pure) and the outbox that queues, limits and sends them (``outbox``).
"""
