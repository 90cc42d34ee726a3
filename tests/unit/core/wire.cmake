# Unit tests for core/wire views.
