use crate::transport::Endpoint;
use crate::ClientError;

#[test]
fn urls_parse_with_default_ports_and_bare_ipv6_hosts() {
    let plain = Endpoint::parse("ws://127.0.0.1:7700/ws").unwrap();
    assert!(!plain.is_tls());
    assert_eq!(plain.host_port(), ("127.0.0.1", 7700));
    let tls = Endpoint::parse("wss://chat.example/ws").unwrap();
    assert!(tls.is_tls());
    assert_eq!(tls.host_port(), ("chat.example", 443));
    let v6 = Endpoint::parse("ws://[::1]/ws").unwrap();
    assert_eq!(v6.host_port(), ("::1", 80));
    for bad in ["http://h/ws", "ws:///ws", "", "h:1"] {
        assert!(matches!(Endpoint::parse(bad), Err(ClientError::InvalidUrl(_))), "{bad:?}");
    }
}

#[test]
fn redirect_keeps_scheme_and_path() {
    let endpoint = Endpoint::parse("wss://a.example:8443/ws?v=1").unwrap();
    let moved = endpoint.redirect("10.1.2.3:9443").unwrap();
    assert!(moved.is_tls());
    assert_eq!(moved.host_port(), ("10.1.2.3", 9443));
    assert_eq!(moved.uri().to_string(), "wss://10.1.2.3:9443/ws?v=1");
    assert!(endpoint.redirect("").is_err());
}
