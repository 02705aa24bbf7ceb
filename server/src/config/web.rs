//! The web app's setting types: who may sign up, the join code, trusted proxy ranges and the
//! origins that may frame the app. They are values of the configuration, so they live with it;
//! the web layer uses them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SignupMode {
    Closed,
    Invite,
    Code,
    Open,
}

impl SignupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SignupMode::Closed => "closed",
            SignupMode::Invite => "invite",
            SignupMode::Code => "code",
            SignupMode::Open => "open",
        }
    }

    /// One sentence for the sign-in and sign-up pages.
    pub fn explanation(self) -> &'static str {
        match self {
            SignupMode::Closed => {
                "Sign-up is closed on this server: an admin creates accounts. Ask them for one."
            }
            SignupMode::Invite => "Sign-up is by invitation: ask your instructor for a link.",
            SignupMode::Code => "Sign-up needs the join code your instructor gives out.",
            SignupMode::Open => "Anyone can create an account here.",
        }
    }
}

impl fmt::Display for SignupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The join code of `signup: code`. Kept out of `Debug` output, so a logged configuration does
/// not hand it out.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinCode(String);

impl JoinCode {
    pub const MIN_CHARS: usize = 8;

    pub fn new(code: &str) -> Result<Self> {
        let code = code.trim();
        if code.chars().count() < Self::MIN_CHARS || code.len() > 200 {
            return Err(Error::Config(format!(
                "signup_code: a join code has {} to 200 characters",
                Self::MIN_CHARS
            )));
        }
        Ok(JoinCode(code.to_owned()))
    }

    /// Compared in constant time; surrounding spaces a learner typed do not count.
    pub(crate) fn matches(&self, typed: &str) -> bool {
        let typed = typed.trim().as_bytes();
        let code = self.0.as_bytes();
        typed.len() == code.len()
            && typed
                .iter()
                .zip(code)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl fmt::Debug for JoinCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinCode(..)")
    }
}

/// One address or a CIDR range of them (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressRangeError {
    #[error("not an IP address or CIDR range (like 10.0.0.0/8 or 192.0.2.7)")]
    NotAnAddress,
    #[error("the prefix length must be at most {max}")]
    PrefixTooLong { max: u8 },
}

impl AddressRange {
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical_address(address)) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                prefix_matches(&network.octets(), &address.octets(), self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                prefix_matches(&network.octets(), &address.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(network: &[u8], address: &[u8], prefix: u8) -> bool {
    let full_bytes = usize::from(prefix / 8);
    let rest_bits = prefix % 8;
    if network[..full_bytes] != address[..full_bytes] {
        return false;
    }
    if rest_bits == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest_bits);
    (network[full_bytes] & mask) == (address[full_bytes] & mask)
}

impl FromStr for AddressRange {
    type Err = AddressRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network = canonical_address(
            address
                .parse::<IpAddr>()
                .map_err(|_| AddressRangeError::NotAnAddress)?,
        );
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .map_err(|_| AddressRangeError::NotAnAddress)?,
            None => max,
        };
        if prefix > max {
            return Err(AddressRangeError::PrefixTooLong { max });
        }
        Ok(AddressRange { network, prefix })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:192.0.2.7`) is the IPv4 client.
pub fn canonical_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Checks the `frame_ancestors` setting: `'self'` or origins like `https://lms.example.org`
/// (`https://*.example.org` and a port allowed). Anything else could widen or break the policy.
pub fn parse_frame_ancestors(entries: &[String]) -> Result<Vec<String>> {
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            if entry == "'self'" || entry.eq_ignore_ascii_case("self") {
                return Ok("'self'".to_owned());
            }
            if is_origin(entry) {
                Ok(entry.trim_end_matches('/').to_ascii_lowercase())
            } else {
                Err(Error::Config(format!(
                    "frame_ancestors: {entry:?} is not an origin like https://lms.example.org \
                     or 'self'"
                )))
            }
        })
        .collect()
}

fn is_origin(entry: &str) -> bool {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return false;
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "https" | "http") {
        return false;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    host_ok && port_ok
}
