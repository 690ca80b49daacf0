"""Real talking videos (issue 16): the manifest, `main.py prep`'s stages and `main.py data export`.

Layering: like synthavatar/, a data world below the data sources; it imports common/ and the core's prompt
format (models.prompt), never training, inference or evaluation code. Heavy imports stay inside modules.
"""
