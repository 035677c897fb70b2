//! Sans-IO WebSocket (RFC 6455) server side: the HTTP upgrade and the frame reader and writer (being written).
