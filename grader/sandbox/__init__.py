"""The door to student code: bubblewrap, the zygote, devices, the notebook sandbox, task caps, the executors (local, Ray)."""
