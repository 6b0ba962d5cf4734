"""The error a model raises for options it cannot be built with."""

from __future__ import annotations


class ModelConfigError(ValueError):
    """Options a model cannot be built with: an impossible architecture, a width of 0, ...

    The message says which option and why.  Models know nothing of command lines; the code
    that builds them from a user's config (:func:`textsearch.training.make_model`) turns
    this into a one-line :class:`textsearch.errors.UserError`.
    """
