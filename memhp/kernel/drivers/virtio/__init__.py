"""drivers/virtio: the virtio bus and the virtio-mem driver."""
