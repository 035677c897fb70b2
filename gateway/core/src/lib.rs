//! The sans-IO session core of the gateway: handshake, auth, live, draining, closed (being written).
