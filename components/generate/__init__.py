"""Generate step: synthetic DC taxi trip files in the published format, with a known fare model.

``core`` holds the logic (:func:`components.generate.core.run`), ``__main__`` the CLI
(``python -m components.generate`` / ``fareflow generate``).
"""
