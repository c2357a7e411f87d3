"""Model-aware advice: reference recipes (``--base``) mapped onto the user's layer stack.

The flat modules :mod:`advisor.spec`, :mod:`advisor.stack`, :mod:`advisor.plan` and
:mod:`advisor.recommend` hold the engine; this package holds what v0.2 adds on top of it.
"""
