"""The student model itself, free of Django: architecture, training, inference (see distill.services
for the app around it)."""
