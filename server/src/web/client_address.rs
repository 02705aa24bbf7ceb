//! The address of the client behind a request, for sign-in throttling.
//!
//! The TCP peer is the client unless it is one of the configured reverse proxies
//! (`trusted_proxies`); then `X-Forwarded-For` is read from the right, skipping the trusted
//! proxies' own hops, and the first untrusted hop is the client. Everything left of that hop is
//! whatever the client chose to write, so it is never used.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::AppState;
use crate::config::canonical_address as canonical;
pub use crate::config::{AddressRange, AddressRangeError};

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the right-most hop
/// of `X-Forwarded-For` that is not itself a trusted proxy. `None` without a peer (an app served
/// without connect info).
pub fn resolve(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[AddressRange],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |address: IpAddr| trusted.iter().any(|range| range.contains(address));
    if !is_trusted(peer) {
        return Some(peer);
    }
    // Several headers count as one comma-separated list, in order.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        // A hop a trusted proxy wrote is an address; anything else means the chain is not one
        // this server can follow, so the nearest trusted hop stands in for the client.
        let Some(address) = parse_hop(hop) else {
            return Some(nearest);
        };
        if !is_trusted(address) {
            return Some(address);
        }
        nearest = address;
    }
    Some(nearest)
}

/// `192.0.2.7`, `2001:db8::1`, and the forms with a port some proxies write (`192.0.2.7:5123`,
/// `[2001:db8::1]:5123`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|socket| canonical(socket.ip()))
}

/// The throttling identity of an address: IPv6 clients get a whole /64 each (one host usually
/// holds all of one), so stepping through its addresses earns no fresh attempts.
pub fn throttle_identity(address: Option<IpAddr>) -> String {
    match address {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let segments = v6.segments();
            let network = Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            );
            format!("{network}/64")
        }
    }
}

/// The client's address as [`resolve`] finds it, for a handler.
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(ClientAddress(resolve(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ranges(texts: &[&str]) -> Vec<AddressRange> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn ranges_parse_and_match() {
        let range: AddressRange = "10.1.0.0/16".parse().unwrap();
        assert!(range.contains(ip("10.1.200.3")));
        assert!(!range.contains(ip("10.2.0.1")));
        assert!(range.contains(ip("::ffff:10.1.0.9")));
        let odd: AddressRange = "192.0.2.128/25".parse().unwrap();
        assert!(odd.contains(ip("192.0.2.200")));
        assert!(!odd.contains(ip("192.0.2.100")));
        let single: AddressRange = "2001:db8::1".parse().unwrap();
        assert!(single.contains(ip("2001:db8::1")));
        assert!(!single.contains(ip("2001:db8::2")));
        assert!(
            "0.0.0.0/0"
                .parse::<AddressRange>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<AddressRange>(),
            Err(AddressRangeError::PrefixTooLong { max: 32 })
        );
        assert_eq!(
            "proxy.local".parse::<AddressRange>(),
            Err(AddressRangeError::NotAnAddress)
        );
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let headers = forwarded(&["198.51.100.9"]);
        assert_eq!(
            resolve(Some(ip("203.0.113.5")), &headers, &[]),
            Some(ip("203.0.113.5"))
        );
    }

    #[test]
    fn a_peer_that_is_not_a_trusted_proxy_is_the_client_whatever_it_forwards() {
        let headers = forwarded(&["198.51.100.9"]);
        let trusted = ranges(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(Some(ip("203.0.113.5")), &headers, &trusted),
            Some(ip("203.0.113.5"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = ranges(&["10.0.0.0/8"]);
        // The client wrote "1.2.3.4" itself; the proxies appended the real address and their own.
        let headers = forwarded(&["1.2.3.4, 198.51.100.9", "10.0.0.2"]);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &headers, &trusted),
            Some(ip("198.51.100.9"))
        );
        let with_ports = forwarded(&["[2001:db8::7]:4711, 10.0.0.2:80"]);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &with_ports, &trusted),
            Some(ip("2001:db8::7"))
        );
    }

    #[test]
    fn garbage_or_a_missing_header_leaves_the_nearest_trusted_hop() {
        let trusted = ranges(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &HeaderMap::new(), &trusted),
            Some(ip("10.0.0.1"))
        );
        let headers = forwarded(&["not-an-address, 10.0.0.3"]);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &headers, &trusted),
            Some(ip("10.0.0.3"))
        );
    }

    #[test]
    fn ipv6_clients_are_throttled_by_their_slash_64() {
        assert_eq!(
            throttle_identity(Some(ip("2001:db8:1:2:aaaa::1"))),
            throttle_identity(Some(ip("2001:db8:1:2:bbbb::9")))
        );
        assert_ne!(
            throttle_identity(Some(ip("2001:db8:1:2::1"))),
            throttle_identity(Some(ip("2001:db8:1:3::1")))
        );
        assert_eq!(throttle_identity(Some(ip("192.0.2.7"))), "192.0.2.7");
        assert_eq!(throttle_identity(None), "unknown");
    }
}
