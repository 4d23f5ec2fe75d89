//! IPv4 ranges as recipes write them (`203.0.113.7/32`): parsed strictly, host bits refused.
//! EC2 stores a range with host bits as its network (`203.0.113.7/24` becomes
//! `203.0.113.0/24`), so such a range would never match itself on a re-run, and `1.2.3.4/0` is
//! the whole internet under another name.

use std::net::Ipv4Addr;

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IPv4 range like 203.0.113.7/32")]
    Malformed(String),
    #[error("`{given}` has host bits set: the range is {network}")]
    HostBits { given: String, network: String },
}

/// `a.b.c.d/n` as (network address, prefix length).
pub fn parse(text: &str) -> Result<(Ipv4Addr, u8), CidrError> {
    let malformed = || CidrError::Malformed(text.to_string());
    let (ip, len) = text.split_once('/').ok_or_else(malformed)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| malformed())?;
    if len.is_empty() || len.len() > 2 || !len.chars().all(|c| c.is_ascii_digit()) {
        return Err(malformed());
    }
    let bits: u8 = len.parse().map_err(|_| malformed())?;
    if bits > 32 {
        return Err(malformed());
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    let network = Ipv4Addr::from(u32::from(ip) & mask);
    if network != ip {
        return Err(CidrError::HostBits {
            given: text.to_string(),
            network: format!("{network}/{bits}"),
        });
    }
    Ok((ip, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_networks() {
        assert_eq!(
            parse("203.0.113.7/32").unwrap(),
            (Ipv4Addr::new(203, 0, 113, 7), 32)
        );
        assert_eq!(parse("0.0.0.0/0").unwrap(), (Ipv4Addr::UNSPECIFIED, 0));
        assert_eq!(
            parse("203.0.113.7/24"),
            Err(CidrError::HostBits {
                given: "203.0.113.7/24".into(),
                network: "203.0.113.0/24".into()
            })
        );
        assert!(matches!(
            parse("1.2.3.4/0"),
            Err(CidrError::HostBits { .. })
        ));
        for bad in [
            "203.0.113.7",
            "203.0.113.7/33",
            "203.0.113.7/",
            "a/8",
            "1.2.3.4/+8",
            "::/0",
        ] {
            assert!(matches!(parse(bad), Err(CidrError::Malformed(_))), "{bad}");
        }
    }
}
