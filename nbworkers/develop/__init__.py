"""Trace-driven development: live values of a trace (``live``), recorded calls
(``recorded``), and trying new code on real traces before it goes live (``tryout``)."""
