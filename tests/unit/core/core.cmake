# Unit tests for the foundation pieces of core (ring, pool, virtio header, log, types).
