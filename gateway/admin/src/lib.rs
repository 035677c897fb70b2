//! Gateway metrics (lock-free, Prometheus text) and the admin HTTP listener (/metrics, /healthz, /readyz) (being written).
