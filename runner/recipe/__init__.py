"""Recipes as data: load (positions kept), migrate, override, resolve.

Everything in this package is pure Python plus ruamel.yaml: no torch, transformers,
trl or datasets import, so `recipe lint` stays fast.
"""
