//! Which API server addresses a kubeconfig that a person registers may point the server at.
//!
//! The server connects to a registered cluster from inside the installation's network, so an
//! address is a request the server makes on the registrant's behalf (SSRF). Never allowed:
//! link-local and cloud metadata addresses (instance credentials), unspecified, broadcast,
//! multicast and reserved ranges. Loopback, private and shared (CGNAT) ranges only when an admin
//! allows them (`allow_private_cluster_addresses`), since those reach the server itself, its
//! database and whatever else runs beside it. Host names are resolved and every address is
//! judged; IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64) are judged as IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long resolving a registered server's host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Host names of cloud metadata services (compared without case and trailing dot).
const METADATA_HOST_NAMES: &[&str] = &["metadata.google.internal", "metadata", "metadata.goog"];

/// Cloud metadata addresses outside the link-local ranges (or inside the ranges an admin may
/// allow), refused whatever the setting says: Alibaba Cloud (100.100.100.200), Oracle Cloud
/// (192.0.0.192), AWS over IPv6 (fd00:ec2::254).
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
];
const METADATA_V6: &[Ipv6Addr] = &[Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)];

/// What the installation allows beyond public addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Loopback, private (RFC 1918, fc00::/7) and shared (100.64/10) addresses.
    pub allow_private: bool,
}

/// The kind of an IP address, as far as these rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 100.64/10, carrier-grade NAT.
    Shared,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    CloudMetadata,
    Unspecified,
    Broadcast,
    Multicast,
    /// 0/8, 240/4, 192.0.0/24 and deprecated IPv6 forms: nothing a cluster listens on.
    Reserved,
}

impl AddressClass {
    /// Whether an admin can allow it.
    fn needs_permission(self) -> bool {
        matches!(
            self,
            AddressClass::Loopback | AddressClass::Private | AddressClass::Shared
        )
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::Shared => "shared (100.64.0.0/10)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::CloudMetadata => "cloud metadata",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Multicast => "multicast",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// Why an API server address is refused. Resolved addresses are not named, so the messages do
/// not turn the form into a way of reading the installation's DNS.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("the server address {host} is a cloud metadata service; hardlab never connects to it")]
    MetadataHostName { host: String },
    #[error(
        "the server address {host} is (or resolves to) a {class} address; hardlab never connects there"
    )]
    Forbidden { host: String, class: AddressClass },
    #[error(
        "the server address {host} is (or resolves to) a {class} address, which this installation \
         does not allow; an admin can allow loopback and private addresses with \
         allow_private_cluster_addresses (HARDLAB_ALLOW_PRIVATE_CLUSTER_ADDRESSES)"
    )]
    NotAllowed { host: String, class: AddressClass },
    #[error("the server address {host} does not resolve")]
    Unresolvable {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server address {host} did not resolve within {} seconds", RESOLVE_TIMEOUT.as_secs())]
    ResolveTimeout { host: String },
    #[error("the server address {host} resolves to no address")]
    NoAddress { host: String },
}

/// The class of `ip`; IPv4 inside IPv6 is judged as the IPv4 address.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        AddressClass::CloudMetadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() {
        AddressClass::Private
    } else if a == 100 && (64..128).contains(&b) {
        AddressClass::Shared
    } else if a == 0 || a >= 240 || (a == 192 && b == 0 && c == 0) {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if METADATA_V6.contains(&ip) {
        AddressClass::CloudMetadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if first & 0xffc0 == 0xfec0 {
        // Site-local, deprecated: as private as it gets.
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address an IPv6 address carries: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d,
/// deprecated but still routed by some stacks) and the NAT64 prefix (64:ff9b::/96), which a
/// NAT64 gateway forwards to that IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = ip.segments();
    let low = Ipv4Addr::new(
        (segments[6] >> 8) as u8,
        segments[6] as u8,
        (segments[7] >> 8) as u8,
        segments[7] as u8,
    );
    let compatible =
        segments[..6].iter().all(|s| *s == 0) && !ip.is_loopback() && !ip.is_unspecified();
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (compatible || nat64).then_some(low)
}

/// Whether the policy lets the server connect to `ip`; `host` names it in the error.
pub fn check_ip(host: &str, ip: IpAddr, policy: AddressPolicy) -> Result<(), AddressError> {
    let class = classify(ip);
    if class == AddressClass::Public || (class.needs_permission() && policy.allow_private) {
        return Ok(());
    }
    let host = host.to_owned();
    if class.needs_permission() {
        Err(AddressError::NotAllowed { host, class })
    } else {
        Err(AddressError::Forbidden { host, class })
    }
}

/// The host as written in a URL (IPv6 in brackets) without brackets, lower case, without a
/// trailing dot.
fn normalized_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// How long choosing among a name's addresses waits for each to accept a connection.
const PICK_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves `host` and checks every address (see [`resolve_checked_all`]); returns the one to
/// connect to, so the connection goes where the check looked.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    policy: AddressPolicy,
) -> Result<SocketAddr, AddressError> {
    let addresses = resolve_checked_all(host, port, policy).await?;
    first_answering(&addresses)
        .await
        .ok_or(AddressError::NoAddress {
            host: normalized_host(host),
        })
}

/// The first address that accepts a TCP connection when there are several (as a client tries
/// each address of a name in turn, e.g. `localhost` as ::1, then 127.0.0.1), else the first.
async fn first_answering(addresses: &[SocketAddr]) -> Option<SocketAddr> {
    if addresses.len() > 1 {
        for address in addresses {
            let connected =
                tokio::time::timeout(PICK_TIMEOUT, tokio::net::TcpStream::connect(address)).await;
            if matches!(connected, Ok(Ok(_))) {
                return Some(*address);
            }
        }
    }
    addresses.first().copied()
}

/// Resolves `host` (unless it is an IP address) and checks every address it resolves to; one
/// refused address refuses the host, so a name cannot mix a public and an internal answer.
pub async fn resolve_checked_all(
    host: &str,
    port: u16,
    policy: AddressPolicy,
) -> Result<Vec<SocketAddr>, AddressError> {
    let name = normalized_host(host);
    if METADATA_HOST_NAMES.contains(&name.as_str()) {
        return Err(AddressError::MetadataHostName { host: name });
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        check_ip(&name, ip, policy)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let resolved = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((name.as_str(), port)),
    )
    .await
    .map_err(|_| AddressError::ResolveTimeout { host: name.clone() })?
    .map_err(|source| AddressError::Unresolvable {
        host: name.clone(),
        source,
    })?;
    let addresses: Vec<SocketAddr> = resolved.collect();
    for address in &addresses {
        if let Err(refused) = check_ip(&name, address.ip(), policy) {
            tracing::debug!(host = %name, address = %address.ip(), "a registered server's host resolves to a refused address");
            return Err(refused);
        }
    }
    if addresses.is_empty() {
        return Err(AddressError::NoAddress { host: name });
    }
    Ok(addresses)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn class(text: &str) -> AddressClass {
        classify(text.parse().unwrap())
    }

    const STRICT: AddressPolicy = AddressPolicy {
        allow_private: false,
    };
    const PERMISSIVE: AddressPolicy = AddressPolicy {
        allow_private: true,
    };

    #[test]
    fn each_range_has_its_class() {
        for (address, expected) in [
            ("8.8.8.8", AddressClass::Public),
            ("2001:4860:4860::8888", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.254", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("fc00::1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Shared),
            ("100.127.255.254", AddressClass::Shared),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("febf::1", AddressClass::LinkLocal),
            ("169.254.169.254", AddressClass::CloudMetadata),
            ("fd00:ec2::254", AddressClass::CloudMetadata),
            ("100.100.100.200", AddressClass::CloudMetadata),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("255.255.255.255", AddressClass::Broadcast),
            ("224.0.0.1", AddressClass::Multicast),
            ("239.255.255.250", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("0.1.2.3", AddressClass::Reserved),
            ("240.0.0.1", AddressClass::Reserved),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
        // Just outside the ranges.
        assert_eq!(class("172.32.0.1"), AddressClass::Public);
        assert_eq!(class("100.128.0.1"), AddressClass::Public);
        assert_eq!(class("169.255.0.1"), AddressClass::Public);
        assert_eq!(class("fec0::1"), AddressClass::Reserved);
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        assert_eq!(class("::ffff:169.254.169.254"), AddressClass::CloudMetadata);
        assert_eq!(class("::ffff:127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("::ffff:10.0.0.1"), AddressClass::Private);
        assert_eq!(class("::ffff:8.8.8.8"), AddressClass::Public);
        assert_eq!(class("::169.254.169.254"), AddressClass::CloudMetadata);
        assert_eq!(class("64:ff9b::a9fe:a9fe"), AddressClass::CloudMetadata);
        assert_eq!(class("64:ff9b::808:808"), AddressClass::Public);
    }

    #[test]
    fn link_local_metadata_and_multicast_are_refused_even_when_private_is_allowed() {
        for address in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.251",
            "ff05::2",
        ] {
            let refused = check_ip("h", address.parse().unwrap(), PERMISSIVE);
            assert!(
                matches!(refused, Err(AddressError::Forbidden { .. })),
                "{address}: {refused:?}"
            );
        }
    }

    #[test]
    fn loopback_and_private_need_the_setting() {
        for address in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "172.20.0.1",
            "192.168.0.10",
            "fd01::5",
            "100.64.1.1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = address.parse().unwrap();
            let refused = check_ip("h", ip, STRICT);
            assert!(
                matches!(refused, Err(AddressError::NotAllowed { .. })),
                "{address}: {refused:?}"
            );
            assert!(
                refused
                    .unwrap_err()
                    .to_string()
                    .contains("allow_private_cluster_addresses")
            );
            assert!(check_ip("h", ip, PERMISSIVE).is_ok(), "{address}");
        }
        assert!(check_ip("h", "93.184.215.14".parse().unwrap(), STRICT).is_ok());
    }

    #[tokio::test]
    async fn metadata_names_are_refused_without_resolving() {
        for host in [
            "metadata.google.internal",
            "METADATA.google.internal.",
            "metadata",
        ] {
            let refused = resolve_checked(host, 443, PERMISSIVE).await;
            assert!(
                matches!(refused, Err(AddressError::MetadataHostName { .. })),
                "{host}: {refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn names_are_resolved_and_every_address_is_checked() {
        // `localhost` resolves to loopback (both families on most hosts).
        let refused = resolve_checked("localhost", 6443, STRICT).await;
        assert!(
            matches!(refused, Err(AddressError::NotAllowed { .. })),
            "{refused:?}"
        );
        let allowed = resolve_checked("localhost", 6443, PERMISSIVE)
            .await
            .unwrap();
        assert!(allowed.ip().is_loopback());
        assert_eq!(allowed.port(), 6443);
        // Of several addresses, the one that accepts connections; with none, the first.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(first_answering(&[closed, open]).await, Some(open));
        assert_eq!(first_answering(&[closed]).await, Some(closed));
        assert_eq!(first_answering(&[]).await, None);
        let literal = resolve_checked("[::1]", 1, PERMISSIVE).await.unwrap();
        assert_eq!(literal, "[::1]:1".parse().unwrap());
        assert!(matches!(
            resolve_checked("[fe80::1]", 1, PERMISSIVE).await,
            Err(AddressError::Forbidden { .. })
        ));
        assert!(matches!(
            resolve_checked("no-such-host.invalid", 1, PERMISSIVE).await,
            Err(AddressError::Unresolvable { .. } | AddressError::ResolveTimeout { .. })
        ));
    }
}
