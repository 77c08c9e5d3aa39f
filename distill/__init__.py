"""Distillation: frozen training sets from teacher runs, precedents and human labels; student judges
trained on them (a cross-encoder with one ordinal head per rubric dimension), evaluated against
humans and their teachers, and promoted before they may back a judge version."""
