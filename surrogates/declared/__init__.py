"""Surrogates of a declared system (``eqs fit``): built from its declaration alone."""
