//! IPv4 ranges as recipes write them (`203.0.113.7/32`): parsed strictly, host bits refused.
//! EC2 stores a range with host bits as its network (`203.0.113.7/24` becomes
//! `203.0.113.0/24`), so such a range would never match itself on a re-run, and `1.2.3.4/0` is
//! the whole internet under another name.

use std::net::Ipv4Addr;

/// Why a range was refused, in words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IPv4 range like 203.0.113.7/32 (an address, `/`, a prefix length)")]
    Malformed(String),
    #[error("`{given}`: {part} is not an address byte (each of the four is 0–255)")]
    Byte { given: String, part: String },
    #[error("`{given}`: the prefix length must be 0–32, not {len}")]
    PrefixLength { given: String, len: String },
    #[error("`{given}` has host bits set: the range is {network}")]
    HostBits { given: String, network: String },
}

/// `a.b.c.d/n` as (network address, prefix length).
pub fn parse(text: &str) -> Result<(Ipv4Addr, u8), CidrError> {
    let malformed = || CidrError::Malformed(text.to_string());
    let (ip, len) = text.split_once('/').ok_or_else(malformed)?;
    let parts: Vec<&str> = ip.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 3 || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(malformed());
    }
    if let Some(big) = parts
        .iter()
        .find(|p| p.parse::<u16>().map_or(true, |n| n > 255))
    {
        return Err(CidrError::Byte {
            given: text.to_string(),
            part: big.to_string(),
        });
    }
    let ip: Ipv4Addr = ip.parse().map_err(|_| malformed())?;
    if len.is_empty() || !len.chars().all(|c| c.is_ascii_digit()) {
        return Err(malformed());
    }
    let bits = match len.parse::<u8>() {
        Ok(b) if b <= 32 && len.len() <= 2 => b,
        _ => {
            return Err(CidrError::PrefixLength {
                given: text.to_string(),
                len: len.to_string(),
            })
        }
    };
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
            "203.0.113.7/",
            "a/8",
            "1.2.3.4/+8",
            "::/0",
            "1.2.3/8",
        ] {
            assert!(matches!(parse(bad), Err(CidrError::Malformed(_))), "{bad}");
        }
        // The reasons a person can act on, in words.
        assert_eq!(
            parse("999.1.1.1/32").unwrap_err().to_string(),
            "`999.1.1.1/32`: 999 is not an address byte (each of the four is 0–255)"
        );
        assert_eq!(
            parse("10.0.0.0/33").unwrap_err().to_string(),
            "`10.0.0.0/33`: the prefix length must be 0–32, not 33"
        );
        assert!(matches!(
            parse("10.0.0.0/032"),
            Err(CidrError::PrefixLength { .. })
        ));
    }
}
