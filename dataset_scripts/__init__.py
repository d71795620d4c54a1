"""`datasets` builders for the SkinLens datasets.

Current ``datasets`` no longer runs loading scripts, so ``skin.data``
instantiates these ``GeneratorBasedBuilder`` classes directly.
"""
