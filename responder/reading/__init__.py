"""Reading: a message's bytes to the facts a person would see (no I/O).

``message.analyse`` is the entry: ``addresses`` reads From:, ``body`` finds the text parts,
``reply``/``quotes``/``html_reply`` cut the new text from quotes, ``banners`` and ``machine``
recognise what the mail system wrote, ``decision`` and ``language`` read the word.
"""
