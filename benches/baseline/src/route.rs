//! Which handler an upgrade request's path selects.

/// A route served over WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /echo`: every data message is sent back.
    Echo,
    /// `GET /hub/<room>`: every data message goes to the room's other members.
    Hub(String),
}

impl Route {
    /// The route for a request path (without its query), or `None` for a 404.
    /// A room name is one non-empty path segment.
    pub(crate) fn parse(path: &str) -> Option<Self> {
        if path == "/echo" {
            return Some(Self::Echo);
        }
        let room = path.strip_prefix("/hub/")?;
        (!room.is_empty() && !room.contains('/')).then(|| Self::Hub(room.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn paths() {
        assert_eq!(Route::parse("/echo"), Some(Route::Echo));
        assert_eq!(Route::parse("/hub/lobby"), Some(Route::Hub("lobby".into())));
        for bad in ["/", "/echo/", "/echoes", "/hub", "/hub/", "/hub/a/b", "/other"] {
            assert_eq!(Route::parse(bad), None, "{bad}");
        }
    }
}
